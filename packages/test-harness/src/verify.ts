import type { OutcomeModel } from './outcome-model.js';
import type { StoreAdapter, StoreHandle } from './store-adapter.js';
import { metadataFor, sameBytes, sameMetadata, valueFor } from './values.js';

/** What one verification after a crash found. */
export interface VerifyResult {
  /** Keys read back. */
  keysChecked: number;
  /** Keys whose state lost an acknowledged write (missing, resurrected after an acknowledged delete, or stale). */
  lost: number;
  /** Reads that failed or returned bytes/metadata of no version ever written to the key (torn or wrong). */
  corrupt: number;
  /** One line per problem (at most 20). */
  problems: string[];
  /** The state each key holds now (for the next round's initial state). */
  state: Map<string, number | null>;
}

/**
 * Reads every key the model knows and every key the store lists, and compares with what the model allows.
 * Values are recomputed with `valueFor(seed, key, version, maxBytes)`.
 */
export async function verifyAgainstModel(
  adapter: StoreAdapter,
  handle: StoreHandle,
  model: OutcomeModel,
  seed: number,
  maxBytes: number,
): Promise<VerifyResult> {
  const result: VerifyResult = { keysChecked: 0, lost: 0, corrupt: 0, problems: [], state: new Map() };
  const problem = (text: string): void => {
    if (result.problems.length < 20) result.problems.push(text);
  };
  let listed: string[] = [];
  try {
    listed = await handle.keys();
  } catch (err) {
    result.corrupt++;
    problem(`list failed: ${describe(adapter, err)}`);
  }
  const keys = new Set([...model.keys(), ...listed]);
  for (const key of keys) {
    result.keysChecked++;
    const allowed = model.allowed(key);
    let got;
    try {
      got = await handle.get(key);
    } catch (err) {
      result.corrupt++;
      problem(`${key}: read failed: ${describe(adapter, err)}`);
      continue;
    }
    if (!got) {
      result.state.set(key, null);
      if (!allowed.includes(null)) {
        result.lost++;
        problem(`${key}: missing; allowed versions ${allowed.join(',')}`);
      }
      continue;
    }
    const matches = (v: number | null): boolean =>
      v !== null && sameBytes(got.value, valueFor(seed, key, v, maxBytes)) && sameMetadata(got.metadata, metadataFor(key, v));
    const ok = allowed.find(matches);
    if (ok !== undefined && ok !== null) {
      result.state.set(key, ok);
      continue;
    }
    const stale = model.written(key).find(matches);
    if (stale !== undefined && stale !== null) {
      result.state.set(key, stale);
      result.lost++;
      problem(`${key}: holds overwritten version ${stale}; allowed ${allowed.map(String).join(',')}`);
    } else {
      result.corrupt++;
      problem(`${key}: holds ${got.value.byteLength} bytes (metadata ${JSON.stringify(got.metadata)}) matching no version; allowed ${allowed.map(String).join(',')}`);
    }
  }
  return result;
}

/** A short description of an error, with the store's code when it has one. */
export function describe(adapter: StoreAdapter, err: unknown): string {
  const code = adapter.errorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code ? `${code}: ${msg}` : `untyped ${err instanceof Error ? err.name : typeof err}: ${msg}`;
}
