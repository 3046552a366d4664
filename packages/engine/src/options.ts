import { InvalidArgumentError, isValidBlockSize } from '@vde/block-device';

export type Durability = 'sync' | 'relaxed';

export interface EngineOptions {
  /** Create the container if it does not exist (default true). */
  create?: boolean;
  /** Open without writing anything: no lock, no recovery writes, every mutation throws `ERR_VDE_READ_ONLY`. */
  readOnly?: boolean;
  /** Block size of a new container: a power of two from 512 to 65,536 (default 4,096). Ignored when opening. */
  blockSize?: number;
  /** `'sync'` (default): a store resolves after fsync. `'relaxed'`: after the write; made durable by checkpoint/close. */
  durability?: Durability;
  /** Number of write stripes (default 64), a power of two. */
  stripeCount?: number;
  /**
   * Size of the write-ahead log region of a new container (default 32 MiB, or an eighth of `maxSizeBytes` when that
   * is smaller: from 64 KiB up, in 64 KiB steps).
   */
  walSizeBytes?: number;
  /** Checkpoint automatically when the log is this full (default 75). */
  checkpointWalUtilizationPercent?: number;
  /** Verify object checksums on every read (default true). */
  verifyChecksums?: boolean;
  /** Bytes of index pages kept in memory (default 128 MiB; a bound, not an allocation). */
  cacheSizeBytes?: number;
  /** The container never grows past this many bytes (default: no limit but the disk). */
  maxSizeBytes?: number;
  /**
   * With durability `'sync'`, a write that is the only one in progress commits its log record with one synchronous
   * `O_DSYNC` write on the calling thread instead of in libuv's thread pool, while such writes take under 2 ms
   * (default true). It saves the thread-pool round trip (20–40% of a fast disk's commit) and blocks the event loop
   * for the commit; false always commits in the pool.
   */
  inlineCommits?: boolean;
}

export interface ResolvedOptions {
  create: boolean;
  readOnly: boolean;
  blockSize: number;
  durability: Durability;
  stripeCount: number;
  walSizeBytes: number;
  checkpointWalUtilizationPercent: number;
  verifyChecksums: boolean;
  cacheSizeBytes: number;
  maxSizeBytes: number;
  inlineCommits: boolean;
}

const KNOWN = new Set([
  'create',
  'readOnly',
  'blockSize',
  'durability',
  'stripeCount',
  'walSizeBytes',
  'checkpointWalUtilizationPercent',
  'verifyChecksums',
  'cacheSizeBytes',
  'maxSizeBytes',
  'inlineCommits',
]);

function bool(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`option ${name} must be a boolean, got ${typeof value}`);
  return value;
}

function int(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

const DEFAULT_WAL_BYTES = 32 << 20;

/** The log size of a new container given its size limit: 32 MiB, or an eighth of the limit (64 KiB steps, 64 KiB at least). */
export function defaultWalBytes(maxSizeBytes: number): number {
  const step = 64 << 10;
  return Math.min(DEFAULT_WAL_BYTES, Math.max(step, Math.floor(maxSizeBytes / 8 / step) * step));
}

/** Validates user options and fills in defaults. Unknown option names are rejected (they are usually typos). */
export function resolveOptions(options: unknown): ResolvedOptions {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!KNOWN.has(name)) throw new InvalidArgumentError(`unknown option ${JSON.stringify(name)}`);
  }
  const blockSize = o.blockSize === undefined ? 4096 : o.blockSize;
  if (!isValidBlockSize(blockSize)) {
    throw new InvalidArgumentError(`option blockSize must be a power of two from 512 to 65536, got ${JSON.stringify(blockSize)}`);
  }
  const durability = o.durability === undefined ? 'sync' : o.durability;
  if (durability !== 'sync' && durability !== 'relaxed') {
    throw new InvalidArgumentError(`option durability must be 'sync' or 'relaxed', got ${JSON.stringify(durability)}`);
  }
  const stripeCount = int(o.stripeCount, 'stripeCount', 64, 1, 1 << 20);
  if ((stripeCount & (stripeCount - 1)) !== 0) {
    throw new InvalidArgumentError(`option stripeCount must be a power of two, got ${stripeCount}`);
  }
  const maxSizeBytes = int(o.maxSizeBytes, 'maxSizeBytes', Number.MAX_SAFE_INTEGER, 1 << 20, Number.MAX_SAFE_INTEGER);
  // A size limit without a log size gets a log that fits it: the 32 MiB default made every maxSizeBytes below about
  // 33 MiB fail open with ERR_VDE_FULL ("too small for a 33554432-byte log").
  const walSizeBytes = int(o.walSizeBytes, 'walSizeBytes', defaultWalBytes(maxSizeBytes), 64 << 10, 2 ** 40);
  return {
    create: bool(o.create, 'create', true),
    readOnly: bool(o.readOnly, 'readOnly', false),
    blockSize,
    durability,
    stripeCount,
    walSizeBytes,
    checkpointWalUtilizationPercent: int(o.checkpointWalUtilizationPercent, 'checkpointWalUtilizationPercent', 75, 1, 100),
    verifyChecksums: bool(o.verifyChecksums, 'verifyChecksums', true),
    cacheSizeBytes: int(o.cacheSizeBytes, 'cacheSizeBytes', 128 << 20, 64 << 10, 2 ** 40),
    maxSizeBytes,
    inlineCommits: bool(o.inlineCommits, 'inlineCommits', true),
  };
}
