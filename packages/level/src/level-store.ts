import { InvalidKeyError, type Snapshot, type VirtualDiskEngine, VdeError } from '@vde/engine';
import { IssueOrder } from './issue-order.js';
import { type VdeRange, fromVdeKey, mappedKeyBytes, maxLevelKeyBytes, successor, toVdeKey } from './key-codec.js';
import { type SnapshotLease, SnapshotPool } from './snapshot-lease.js';

/** A level key or value as the private abstract-level API hands it over ('buffer', 'view' or 'utf8' format). */
export type LevelData = Uint8Array | string;

export type LevelBatchOp = { type: 'put'; key: LevelData; value: LevelData } | { type: 'del'; key: LevelData };

/** Deletes per engine batch in clear() (fewer when the log is small): each chunk is one atomic log record. */
const CLEAR_CHUNK = 256;

const utf8 = new TextEncoder();

export function toBytes(data: LevelData): Uint8Array {
  return typeof data === 'string' ? utf8.encode(data) : data;
}

/** Value buffers copied by ownValue(): a chained batch copies at put(), its write() need not copy again. */
const owned = new WeakSet<Uint8Array>();

/**
 * The value as the engine may keep reading it: the engine reads a value buffer while the store runs (engine README),
 * but level code may refill it as soon as put(), batch() or a chained batch's put() returns (classic-level copies
 * there). So a buffer is copied when the call is made; a string is immutable and goes through as it is.
 */
export function ownValue(value: LevelData): LevelData {
  if (typeof value === 'string' || owned.has(value)) return value;
  // A Buffer stays a Buffer: a sublevel's chained batch hands its values to the parent's batch(), whose 'buffer'
  // encoding would wrap a plain Uint8Array in a new Buffer (not in `owned`) and copy it again.
  const copy = Buffer.isBuffer(value) ? Buffer.from(value) : new Uint8Array(value);
  owned.add(copy);
  return copy;
}

function isNotFound(err: unknown): boolean {
  return err instanceof VdeError && err.code === 'ERR_VDE_NOT_FOUND';
}

/** What reads go to: the live engine or a snapshot of it. */
type ReadSource = Pick<Snapshot, 'retrieve' | 'exists' | 'list'>;

/**
 * The byte-level store under VdeLevel, for one open engine: key mapping, issue ordering (IssueOrder) and shared
 * snapshots (SnapshotPool). VdeLevel adds abstract-level's encodings and lifecycle on top.
 */
export class LevelStore {
  readonly engine: VirtualDiskEngine;
  readonly order = new IssueOrder();
  readonly pool: SnapshotPool;
  /** Longest level key, in bytes, this container accepts. */
  readonly maxKeyBytes: number;
  /** Every read and write issued and not yet settled: close() lets them finish first (as classic-level does). */
  readonly #pending = new Set<Promise<unknown>>();

  constructor(engine: VirtualDiskEngine) {
    this.engine = engine;
    this.pool = new SnapshotPool(engine, this.order);
    this.maxKeyBytes = maxLevelKeyBytes(engine.maxKeyBytes);
  }

  /** Maps a level key to its VDE key, or throws `ERR_VDE_INVALID_KEY` when it is too long for the container. */
  vdeKey(key: LevelData): string {
    const bytes = toBytes(key);
    if (bytes.byteLength > this.maxKeyBytes) {
      throw new InvalidKeyError(
        `a level key of ${bytes.byteLength} bytes is too long: this container takes keys of at most ${this.maxKeyBytes} bytes ` +
          `(each key byte takes two bytes of the ${this.engine.maxKeyBytes}-byte VDE key, plus ${mappedKeyBytes(0)} for the prefix; see the README, "Key mapping")`,
      );
    }
    return toVdeKey(bytes);
  }

  // ─── reads ──────────────────────────────────────────────────────────────────────────────────────────────

  get(key: LevelData, lease: SnapshotLease | undefined): Promise<Uint8Array | undefined> {
    const k = this.vdeKey(key);
    return this.#read(lease, async (source) => {
      try {
        return await source.retrieve(k);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  getMany(keys: readonly LevelData[], lease: SnapshotLease | undefined): Promise<(Uint8Array | undefined)[]> {
    const ks = keys.map((key) => this.vdeKey(key));
    return this.#read(lease, (source) =>
      Promise.all(
        ks.map(async (k) => {
          try {
            return await source.retrieve(k);
          } catch (err) {
            if (isNotFound(err)) return undefined;
            throw err;
          }
        }),
      ),
    );
  }

  hasMany(keys: readonly LevelData[], lease: SnapshotLease | undefined): Promise<boolean[]> {
    const ks = keys.map((key) => this.vdeKey(key));
    return this.#read(lease, (source) => Promise.all(ks.map((k) => source.exists(k))));
  }

  /** Live reads go through IssueOrder (rule 3); snapshot reads need no ordering. */
  #read<T>(lease: SnapshotLease | undefined, fn: (source: ReadSource) => Promise<T>): Promise<T> {
    if (lease) {
      const held = lease.share();
      return this.#track(held.snapshot.then(fn).finally(() => held.release()));
    }
    return this.#track(this.order.read(() => fn(this.engine)));
  }

  // ─── writes ─────────────────────────────────────────────────────────────────────────────────────────────

  put(key: LevelData, value: LevelData): Promise<void> {
    const k = this.vdeKey(key);
    const data = ownValue(value);
    return this.#write(
      async () => {
        await this.engine.store(k, data);
      },
      { keys: [k] },
    );
  }

  del(key: LevelData): Promise<void> {
    const k = this.vdeKey(key);
    return this.#write(
      async () => {
        await this.engine.delete(k);
      },
      { keys: [k] },
    );
  }

  /** Applies the operations atomically (one engine batch). When a key repeats, its last operation wins. */
  batch(operations: readonly LevelBatchOp[]): Promise<void> {
    const last = new Map<string, { type: 'put'; key: string; data: LevelData } | { type: 'del'; key: string }>();
    for (const op of operations) {
      const key = this.vdeKey(op.key);
      last.delete(key); // keep the order of last occurrences
      last.set(key, op.type === 'put' ? { type: 'put', key, data: ownValue(op.value) } : { type: 'del', key });
    }
    const ops = [...last.values()];
    return this.#write(() => this.engine.batch(ops), { keys: ops.map((o) => o.key), multiKey: ops.length > 1 });
  }

  /**
   * Deletes the keys of `range` (at most `limit` of them, -1 for all, taken from the `reverse` end), as seen by
   * `lease` when given (an explicit snapshot) or by the live store. Not atomic as a whole: chunks of
   * up to CLEAR_CHUNK keys are. Writes issued after the clear wait for it (IssueOrder rule 2).
   */
  clear(range: VdeRange, limit: number, reverse: boolean, lease: SnapshotLease | undefined): Promise<void> {
    const held = lease?.share();
    const run = async (): Promise<void> => {
      const source: ReadSource = held ? await held.snapshot : this.engine;
      let remaining = limit < 0 ? Number.POSITIVE_INFINITY : limit;
      let { start, end } = range;
      // Keys per engine batch: halved while a batch needs more log than one operation may use (a small
      // walSizeBytes, long keys), which the engine refuses before it writes anything.
      let chunk = CLEAR_CHUNK;
      while (remaining > 0 && start < end) {
        const want = Math.min(chunk, remaining);
        const keys: string[] = [];
        let listed = 0;
        let lastKey: string | undefined;
        for await (const info of source.list({ start, end, reverse, limit: want })) {
          listed++;
          lastKey = info.key;
          if (fromVdeKey(info.key)) keys.push(info.key);
        }
        for (let i = 0; i < keys.length; ) {
          const part = keys.slice(i, i + chunk);
          try {
            await this.engine.batch(part.map((key) => ({ type: 'del' as const, key })));
          } catch (err) {
            if (!(err instanceof VdeError && err.code === 'ERR_VDE_TOO_LARGE') || part.length === 1) throw err;
            chunk = Math.ceil(part.length / 2);
            continue;
          }
          i += part.length;
        }
        remaining -= keys.length;
        if (listed < want || lastKey === undefined) break;
        if (reverse) end = lastKey;
        else start = successor(lastKey);
      }
    };
    const p = this.#write(run, { multiKey: true, holdLaterWrites: true });
    return held ? p.finally(() => held.release()) : p;
  }

  #write<T>(fn: () => Promise<T>, options: { keys?: readonly string[]; multiKey?: boolean; holdLaterWrites?: boolean } = {}): Promise<T> {
    this.pool.noteWrite();
    return this.#track(this.order.write(fn, options));
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    const drop = (): void => {
      this.#pending.delete(p);
    };
    p.then(drop, drop);
    return p;
  }

  // ─── lifecycle ──────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Lets every read and write issued before the close finish (a put issued and not awaited before close() is
   * applied, not rejected with ERR_VDE_CLOSED: classic-level's rule), then closes the shared snapshot and the engine.
   */
  async close(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    try {
      await this.pool.close();
    } finally {
      await this.engine.close();
    }
  }
}
