import { InvalidArgumentError, type BlockDevice } from '@vde/block-device';

/** What a reader gets back for a key. */
export interface StoredObject {
  value: Uint8Array;
  metadata: Record<string, string>;
}

/**
 * The small surface the runners need from a key-value / object store. Implement it for your own store to run the
 * crash runner, the power-cut, corruption and I/O fault sweeps and the soak against it (see `createVdeAdapter` for
 * the VDE one). Every method may throw; the sweeps decide which errors are acceptable from `errorCode`.
 */
export interface StoreHandle {
  put(key: string, value: Uint8Array, metadata: Record<string, string>): Promise<void>;
  /** The object, or undefined when the key does not exist. */
  get(key: string): Promise<StoredObject | undefined>;
  /** Resolves true if the key existed. */
  delete(key: string): Promise<boolean>;
  /** Every key, in any order. */
  keys(): Promise<string[]>;
  /** The store's own consistency check; throws if it fails. */
  check(): Promise<void>;
  /** Reads and verifies everything; returns the problems found (codes), never throws for damage. Optional. */
  scrub?(): Promise<{ problems: { key?: string; code: string }[] }>;
  /** Forces a checkpoint / flush (optional). */
  checkpoint?(): Promise<void>;
  close(): Promise<void>;
}

/** Opens a store on a file path (created if missing) or on a `BlockDevice`. */
export interface StoreAdapter {
  readonly name: string;
  /** `create: false`: an empty target is an error, not a new store. */
  open(target: string | BlockDevice, options?: { readOnly?: boolean; create?: boolean }): Promise<StoreHandle>;
  /**
   * The stable error code of an error the store threw (e.g. `ERR_VDE_CORRUPT`), or undefined when the error is
   * not one of the store's typed errors (the sweeps count that as a failure).
   */
  errorCode(err: unknown): string | undefined;
  /** The codes that mean "the data is damaged" (a correct answer to corrupt input). */
  readonly corruptCodes: readonly string[];
  /** The codes an I/O failure may surface as (EIO, ENOSPC, refusing writes afterwards). */
  readonly ioCodes: readonly string[];
}

/**
 * Where the crash runner's child process finds the adapter: an ES module (path or file URL) whose export
 * `exportName` is a function `(options) => StoreAdapter`. `options` must survive JSON.
 */
export interface AdapterModuleSpec {
  module: string;
  exportName: string;
  options?: unknown;
}

/** Imports an adapter module and builds the adapter (the crash runner's parent and child both use this). */
export async function loadAdapter(spec: AdapterModuleSpec): Promise<StoreAdapter> {
  const s = spec as Partial<AdapterModuleSpec> | null;
  if (s === null || typeof s !== 'object' || typeof s.module !== 'string' || s.module === '' || typeof s.exportName !== 'string') {
    throw new InvalidArgumentError('loadAdapter(spec): spec must be { module: string, exportName: string, options? }');
  }
  const url = spec.module.startsWith('file:') ? spec.module : (await import('node:url')).pathToFileURL(spec.module).href;
  const mod = (await import(url)) as Record<string, unknown>;
  const factory = mod[spec.exportName];
  if (typeof factory !== 'function') throw new TypeError(`${spec.module} has no export ${spec.exportName} that is a function`);
  return (factory as (options: unknown) => StoreAdapter)(spec.options);
}
