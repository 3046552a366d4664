/** What the engine tells about one stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  created: Date;
  modified: Date;
  /** Changes with every store of the key (CRC-32 of the bytes + a random nonce, hex). */
  etag: string;
  metadata: Record<string, string>;
}

export interface StoreOptions {
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ReadOptions {
  signal?: AbortSignal;
}

export interface ListOptions {
  /** Only keys starting with this string. */
  prefix?: string;
  /** First key (inclusive). */
  start?: string;
  /** Last key (exclusive). */
  end?: string;
  /** At most this many objects. */
  limit?: number;
  /** Descending UTF-8 byte order. */
  reverse?: boolean;
}

export type BatchOperation =
  | { type: 'put'; key: string; data: ArrayBufferView | ArrayBuffer | string; metadata?: Record<string, string> }
  | { type: 'del'; key: string };

export interface SnapshotInfo {
  name: string;
  created: Date;
  generation: number;
  objectCount: number;
}

export type HealthStatus = 'healthy' | 'degraded' | 'critical';

export interface HealthReport {
  status: HealthStatus;
  /** Why the status is not healthy (empty when healthy). */
  reasons: string[];
  /** Bytes of blocks in use (objects, index, log, superblocks, blocks waiting to be freed). */
  usedBytes: number;
  /**
   * Bytes kept back for the next checkpoint (copy-on-write index pages and the allocator bitmap); no object is
   * stored in them, so a store that would need them is ERR_VDE_FULL.
   */
  reservedBytes: number;
  /** Bytes still available to objects: capacity less used and reserved bytes. */
  freeBytes: number;
  /** Bytes the container may use: `maxSizeBytes`, or the file plus the disk's free space. */
  capacityBytes: number;
  /** (used + reserved) ÷ capacity, in percent: 100 means stores are refused for lack of space. */
  usedPercent: number;
  containerBytes: number;
  objectCount: number;
  walFillPercent: number;
  checksumErrors: number;
  snapshots: number;
  poisoned: boolean;
}

export interface ScrubProblem {
  /** The object key, or undefined for an index problem. */
  key?: string;
  code: string;
  message: string;
}

export interface ScrubProgress {
  objectsChecked: number;
  objectCount: number;
  bytesChecked: number;
}

export interface ScrubOptions {
  onProgress?: (progress: ScrubProgress) => void;
  signal?: AbortSignal;
}

export interface ScrubReport {
  ok: boolean;
  objectsChecked: number;
  bytesChecked: number;
  indexChecked: boolean;
  problems: ScrubProblem[];
  durationMs: number;
}

export interface CheckReport {
  objects: number;
  /** Blocks accounted for: reserved, meta blob, index pages, objects, deferred frees (0 on read-only opens). */
  blocksReferenced: number;
  indexPages: number;
  pendingFreeBlocks: number;
}
