import type { AdapterModuleSpec } from './store-adapter.js';

/** The crash child's configuration (passed as JSON in argv[2]). */
export interface CrashChildConfig {
  adapter: AdapterModuleSpec;
  /** The container file. */
  path: string;
  seed: number;
  /** Round number: versions written in round r are r·10^7 + 1, 2, … so they never repeat across rounds. */
  round: number;
  writers: number;
  keys: number;
  maxValueBytes: number;
  /** Fraction of operations that are deletes. */
  deleteRatio: number;
}

/**
 * One line of JSON on the child's stdout. Lines are written synchronously and in program order, so their order is
 * the order of events in the child. `i`: a write is issued (`v` the version it stores, null for a delete) — written
 * before the store call starts; `a`: acknowledged — written only after the store's promise resolved; `f`: rejected.
 */
export type CrashChildLine =
  | { t: 'ready' }
  | { t: 'i'; id: number; k: string; v: number | null }
  | { t: 'a'; id: number }
  | { t: 'f'; id: number; code: string };

export const VERSIONS_PER_ROUND = 10_000_000;

export function keyName(i: number): string {
  return `k${String(i).padStart(4, '0')}`;
}
