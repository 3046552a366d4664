import * as fs from 'node:fs/promises';
import { ClosedError, type EngineOptions, ExistsError, InvalidArgumentError, NotFoundError, VirtualDiskEngine } from '@vde/engine';
import { type AbstractDatabaseOptions, AbstractLevel, AbstractSnapshot } from 'abstract-level';
import { VdeChainedBatch, VdeSublevel } from './chained-batch.js';
import { Cursor, type Format, VdeIterator, VdeKeyIterator, VdeValueIterator, formatBytes } from './iterator.js';
import { type VdeRange, toVdeRange } from './key-codec.js';
import { type LevelBatchOp, type LevelData, LevelStore, toBytes } from './level-store.js';
import type { SnapshotLease } from './snapshot-lease.js';

/** Engine options VdeLevel passes through; `create` and `readOnly` follow from the level open options. */
export type VdeEngineOptions = Omit<EngineOptions, 'create' | 'readOnly'>;

/** Options of `new VdeLevel(location, options)`: abstract-level's options plus the engine's. */
export interface VdeLevelOptions<K = string, V = string> extends AbstractDatabaseOptions<K, V> {
  /** Options of the VDE container (blockSize, durability, walSizeBytes, cacheSizeBytes, ...). */
  engine?: VdeEngineOptions | undefined;
}

interface OpenOptions {
  createIfMissing: boolean;
  errorIfExists: boolean;
}

interface ReadOptions {
  keyEncoding: Format;
  valueEncoding: Format;
  snapshot?: unknown;
}

interface RangeOptions {
  gt?: LevelData | null;
  gte?: LevelData | null;
  lt?: LevelData | null;
  lte?: LevelData | null;
  reverse: boolean;
  limit: number;
  keyEncoding: Format;
  valueEncoding?: Format;
  keys?: boolean;
  values?: boolean;
  snapshot?: unknown;
}

const SnapshotBase = AbstractSnapshot as unknown as new (options: { owner: unknown }) => AbstractSnapshot;

/**
 * `engine` must be an object of engine options (or absent). `create` and `readOnly` belong to VdeLevel: the container
 * is created by `createIfMissing`, and a level database is always opened for writing.
 */
function checkEngineOptions(engine: unknown): VdeEngineOptions {
  if (engine === undefined) return {};
  if (engine === null || typeof engine !== 'object' || Array.isArray(engine)) {
    throw new InvalidArgumentError(`VdeLevel option engine must be an object of engine options, got ${engine === null ? 'null' : typeof engine}`);
  }
  if ('create' in engine) throw new InvalidArgumentError('VdeLevel option engine.create is not accepted: use createIfMissing');
  if ('readOnly' in engine) throw new InvalidArgumentError('VdeLevel option engine.readOnly is not accepted: a level database opens for writing');
  return engine;
}

/** An explicit snapshot (`db.snapshot()`): a lease on an engine snapshot, taken when it was created. */
class VdeLevelSnapshot extends SnapshotBase {
  readonly lease: SnapshotLease;

  constructor(options: { owner: unknown }, lease: SnapshotLease) {
    super(options);
    this.lease = lease;
  }

  async _close(): Promise<void> {
    await this.lease.release();
  }
}

function leaseOf(snapshot: unknown): SnapshotLease | undefined {
  if (snapshot === undefined || snapshot === null) return undefined;
  if (snapshot instanceof VdeLevelSnapshot) return snapshot.lease;
  throw new InvalidArgumentError('the snapshot option must be a snapshot of this VdeLevel (from db.snapshot())');
}

function rangeOf(options: RangeOptions): VdeRange {
  const bound = (v: LevelData | null | undefined): Uint8Array | undefined => (v === undefined || v === null ? undefined : toBytes(v));
  return toVdeRange({ gt: bound(options.gt), gte: bound(options.gte), lt: bound(options.lt), lte: bound(options.lte) });
}

async function containerExists(location: string): Promise<boolean> {
  try {
    return (await fs.stat(location)).size > 0;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * An abstract-level database stored in one VDE container file. Keys and values are bytes; every write is durable
 * when its promise resolves (engine durability 'sync', the default), and concurrent writes share fsyncs.
 */
export class VdeLevel<KDefault = string, VDefault = string> extends AbstractLevel<LevelData, KDefault, VDefault> {
  /** The container file. */
  readonly location: string;
  readonly #engineOptions: VdeEngineOptions;
  #store: LevelStore | undefined;

  constructor(location: string, options: VdeLevelOptions<KDefault, VDefault> = {}) {
    if (typeof location !== 'string' || location.length === 0) {
      throw new InvalidArgumentError('VdeLevel needs a location: the path of its container file');
    }
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new InvalidArgumentError('VdeLevel options must be an object');
    }
    const { engine, ...levelOptions } = options;
    // Before super(): abstract-level starts opening (deferred open) as soon as it is constructed.
    const engineOptions = checkEngineOptions(engine);
    super(
      {
        encodings: { buffer: true, view: true, utf8: true },
        implicitSnapshots: true,
        explicitSnapshots: true,
        has: true,
        seek: true,
        permanence: true,
        createIfMissing: true,
        errorIfExists: true,
      },
      levelOptions,
    );
    this.location = location;
    this.#engineOptions = engineOptions;
  }

  /** The longest key, in bytes, this database accepts (511 with 4 KiB blocks; see README "Key mapping"). */
  get maxKeyBytes(): number {
    return this.#open().maxKeyBytes;
  }

  #open(): LevelStore {
    // Only maxKeyBytes reaches this from a caller (abstract-level calls the other methods only while open): not open
    // is ERR_VDE_CLOSED, as every engine call on a closed engine; it was ERR_VDE_INVALID_ARGUMENT (review h10).
    if (!this.#store) throw new ClosedError('the database is not open (db.maxKeyBytes is known while it is open)');
    return this.#store;
  }

  async _open(options: OpenOptions): Promise<void> {
    const exists = await containerExists(this.location);
    if (!exists && !options.createIfMissing) {
      throw new NotFoundError(`${this.location} does not exist (createIfMissing is false)`);
    }
    if (exists && options.errorIfExists) {
      throw new ExistsError(`${this.location} already exists (errorIfExists is true)`);
    }
    const engine = await VirtualDiskEngine.open(this.location, { ...this.#engineOptions, create: options.createIfMissing });
    this.#store = new LevelStore(engine);
  }

  async _close(): Promise<void> {
    const store = this.#store;
    this.#store = undefined;
    await store?.close();
  }

  async _get(key: LevelData, options: ReadOptions): Promise<LevelData | undefined> {
    const value = await this.#open().get(key, leaseOf(options.snapshot));
    return value === undefined ? undefined : formatBytes(value, options.valueEncoding);
  }

  async _getMany(keys: LevelData[], options: ReadOptions): Promise<(LevelData | undefined)[]> {
    const values = await this.#open().getMany(keys, leaseOf(options.snapshot));
    return values.map((v) => (v === undefined ? undefined : formatBytes(v, options.valueEncoding)));
  }

  async _has(key: LevelData, options: ReadOptions): Promise<boolean> {
    const [found] = await this.#open().hasMany([key], leaseOf(options.snapshot));
    return found === true;
  }

  async _hasMany(keys: LevelData[], options: ReadOptions): Promise<boolean[]> {
    return this.#open().hasMany(keys, leaseOf(options.snapshot));
  }

  async _put(key: LevelData, value: LevelData): Promise<void> {
    await this.#open().put(key, value);
  }

  async _del(key: LevelData): Promise<void> {
    await this.#open().del(key);
  }

  async _batch(operations: LevelBatchOp[]): Promise<void> {
    await this.#open().batch(operations);
  }

  async _clear(options: RangeOptions): Promise<void> {
    await this.#open().clear(rangeOf(options), options.limit, options.reverse, leaseOf(options.snapshot));
  }

  /** A chained batch that copies value buffers at put() (see ownValue). */
  _chainedBatch(): VdeChainedBatch {
    return new VdeChainedBatch(this);
  }

  /** Sublevels whose chained batches copy value buffers at put() too. */
  _sublevel(name: string, options: unknown): VdeSublevel {
    return new VdeSublevel(this, name, options);
  }

  _snapshot(options: { owner: unknown }): AbstractSnapshot {
    return new VdeLevelSnapshot(options, this.#open().pool.capture());
  }

  _iterator(options: RangeOptions): VdeIterator<this> {
    return new VdeIterator(this, options, this.#cursor(options), {
      keyEncoding: options.keyEncoding,
      valueEncoding: options.valueEncoding ?? 'buffer',
      values: options.values !== false,
    });
  }

  _keys(options: RangeOptions): VdeKeyIterator<this> {
    return new VdeKeyIterator(this, options, this.#cursor(options), options.keyEncoding);
  }

  _values(options: RangeOptions): VdeValueIterator<this> {
    return new VdeValueIterator(this, options, this.#cursor(options), options.valueEncoding ?? 'buffer');
  }

  /** A cursor on the explicit snapshot, or on a snapshot captured now (implicit snapshot). */
  #cursor(options: RangeOptions): Cursor {
    const store = this.#open();
    const explicit = leaseOf(options.snapshot);
    const lease = explicit ? explicit.share() : store.pool.capture();
    return new Cursor(lease, rangeOf(options), options.reverse);
  }
}
