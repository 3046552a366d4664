/**
 * StripedWriteLock: per-key write exclusion with a fixed number of stripes. A key maps to stripe
 * `fnv1a32(key) & (stripeCount - 1)`; writers on different stripes never wait for each other, writers on one stripe
 * are granted strictly in the order they joined that stripe's queue.
 *
 * Thread safety: every state change (acquire, release, abort, timeout, dispose) is synchronous; there is no `await`
 * inside this module, so each one is atomic. Grants resolve promises, whose continuations run later as microtasks.
 *
 * Invariants (checked by the tests):
 * - `holders[s]` is null, or the one region that owns stripe `s` (granted, or being assembled by `acquireMany`).
 * - A stripe's queue is non-empty only while the stripe is held (release hands the stripe straight to the head).
 * - An unsettled request sits in exactly one queue: the one of the first stripe it still lacks.
 * - `acquireMany` takes its stripes in ascending order, so requests wait only for higher-numbered stripes than any
 *   they hold: no cycle of waiting, no deadlock.
 */
import { LockAbortedError, LockDisposedError, LockTimeoutError, type LockError } from './errors.js';
import { fnv1a32 } from './fnv1a.js';
import { checkOptions, Waiter, type AcquireOptions } from './waiter.js';

/** Stripe counts above this would allocate large tables for no benefit (2^20 = 1,048,576). */
const MAX_STRIPES = 1 << 20;

/** The stripes one grant holds; release it once (further releases are no-ops). */
export interface WriteRegion extends Disposable, AsyncDisposable {
  /** The distinct stripes held, ascending. */
  readonly stripes: readonly number[];
  /** True once `release()` (or a dispose) ran. */
  readonly released: boolean;
  /** Gives the stripes to their next waiters. Idempotent: a second call never frees a stripe someone else now holds. */
  release(): void;
}

/** Counters of a `StripedWriteLock`. */
export interface StripedWriteLockStats {
  readonly stripeCount: number;
  /** Stripes held right now (including the ones a waiting `acquireMany` already took). */
  readonly held: number;
  /** Requests queued right now. */
  readonly waiters: number;
  /** Grants since creation. */
  readonly acquisitions: number;
  /** Grants that had to wait in a queue. */
  readonly contended: number;
  /** Most stripes held at the same time since creation (or since `resetPeak()`). */
  readonly peakHeld: number;
}

/**
 * A grant. Its identity is the token: a stripe is freed only by the region that `holders` says owns it. A region of
 * one stripe (the common case) keeps it in `stripe` and shares the table's frozen one-element array for `stripes`.
 */
class Region implements WriteRegion {
  released = false;
  #stripes: readonly number[] | undefined;
  constructor(
    private readonly table: StripeTable,
    /** The only stripe, or -1 when the region has `many` stripes (or none). */
    readonly stripe: number,
    many?: readonly number[],
  ) {
    this.#stripes = many;
  }

  get stripes(): readonly number[] {
    return this.#stripes ?? this.table.singleton(this.stripe);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const { table } = this;
    if (this.stripe >= 0) {
      table.free(this.stripe, this);
      return;
    }
    const stripes = this.#stripes!;
    for (let i = 0; i < stripes.length; i++) table.free(stripes[i]!, this);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

/** A request that could not take all its stripes at once. `taken` counts the stripes of `region` it holds. */
class StripeWaiter extends Waiter<WriteRegion> {
  taken = 0;
  queuedOn = -1;
  prev: StripeWaiter | null = null;
  next: StripeWaiter | null = null;
  constructor(
    readonly region: Region,
    /** The region's stripes, ascending. */
    readonly stripes: readonly number[],
    private readonly table: StripeTable,
  ) {
    super();
  }

  cancel(error: LockError): void {
    if (this.settled) return;
    this.table.cancel(this, error);
  }
}

/** The mutable state behind a `StripedWriteLock`, shared with its regions and waiters. */
class StripeTable {
  readonly holders: (Region | null)[];
  readonly heads: (StripeWaiter | null)[];
  readonly tails: (StripeWaiter | null)[];
  /** Frozen `[s]` arrays, made on first use and shared by every one-stripe region and waiter of stripe `s`. */
  readonly singletons: (readonly number[] | undefined)[];
  held = 0;
  waiters = 0;
  acquisitions = 0;
  contended = 0;
  peakHeld = 0;
  disposed = false;

  constructor(stripeCount: number) {
    this.holders = new Array<Region | null>(stripeCount).fill(null);
    this.heads = new Array<StripeWaiter | null>(stripeCount).fill(null);
    this.tails = new Array<StripeWaiter | null>(stripeCount).fill(null);
    this.singletons = new Array<readonly number[] | undefined>(stripeCount).fill(undefined);
  }

  singleton(stripe: number): readonly number[] {
    return (this.singletons[stripe] ??= Object.freeze([stripe]));
  }

  /** Fast path: one free stripe, granted in this call. */
  grantFree(stripe: number): Region {
    const region = new Region(this, stripe);
    this.holders[stripe] = region;
    if (++this.held > this.peakHeld) this.peakHeld = this.held;
    this.acquisitions++;
    return region;
  }

  /**
   * Takes the stripes of `w` from `w.taken` on while they are free; queues on the first held one. Grants `w` when it
   * holds them all. Returns true when granted.
   */
  advance(w: StripeWaiter): boolean {
    const { stripes } = w;
    while (w.taken < stripes.length) {
      const s = stripes[w.taken]!;
      if (this.holders[s] !== null) {
        this.enqueue(s, w);
        return false;
      }
      this.holders[s] = w.region;
      if (++this.held > this.peakHeld) this.peakHeld = this.held;
      w.taken++;
    }
    this.acquisitions++;
    return true;
  }

  /** Frees `stripe` if `region` owns it, handing it straight to the head of its queue. */
  free(stripe: number, region: Region): void {
    if (this.holders[stripe] !== region) return; // not ours (any more): never free someone else's stripe
    const w = this.heads[stripe] ?? null;
    if (w === null) {
      this.holders[stripe] = null;
      this.held--;
      return;
    }
    this.dequeue(stripe, w);
    this.holders[stripe] = w.region; // hand-off: held count unchanged
    w.taken++;
    if (this.advance(w)) {
      this.contended++;
      w.grant(w.region);
    }
  }

  cancel(w: StripeWaiter, error: LockError): void {
    if (w.queuedOn >= 0) this.dequeue(w.queuedOn, w);
    w.fail(error);
    // Give back what an acquireMany already took; each stripe goes to its own next waiter.
    const { region } = w;
    region.released = true;
    for (let i = 0; i < w.taken; i++) this.free(w.stripes[i]!, region);
  }

  enqueue(stripe: number, w: StripeWaiter): void {
    w.queuedOn = stripe;
    w.next = null;
    w.prev = this.tails[stripe] ?? null;
    if (w.prev === null) this.heads[stripe] = w;
    else w.prev.next = w;
    this.tails[stripe] = w;
    this.waiters++;
  }

  dequeue(stripe: number, w: StripeWaiter): void {
    if (w.prev === null) this.heads[stripe] = w.next;
    else w.prev.next = w.next;
    if (w.next === null) this.tails[stripe] = w.prev;
    else w.next.prev = w.prev;
    w.prev = w.next = null;
    w.queuedOn = -1;
    this.waiters--;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const doomed: StripeWaiter[] = [];
    for (let s = 0; s < this.heads.length; s++) {
      for (let w = this.heads[s] ?? null; w !== null; w = w.next) doomed.push(w);
    }
    for (const w of doomed) this.dequeue(w.queuedOn, w);
    // Queues are empty now, so freeing the stripes the doomed waiters held hands nothing to anyone.
    for (const w of doomed) this.cancel(w, new LockDisposedError());
  }
}

/**
 * Striped async write lock. `await using region = await lock.acquire(key)` holds the key's stripe until the end
 * of the block.
 */
export class StripedWriteLock implements AsyncDisposable {
  readonly stripeCount: number;
  readonly #mask: number;
  readonly #table: StripeTable;

  constructor(stripeCount = 64) {
    if (
      typeof stripeCount !== 'number' ||
      !Number.isInteger(stripeCount) ||
      stripeCount < 1 ||
      stripeCount > MAX_STRIPES ||
      (stripeCount & (stripeCount - 1)) !== 0
    ) {
      throw new RangeError(`stripeCount must be a power of two from 1 to ${MAX_STRIPES}, got ${String(stripeCount)}`);
    }
    this.stripeCount = stripeCount;
    this.#mask = stripeCount - 1;
    this.#table = new StripeTable(stripeCount);
  }

  /** The stripe of `key`: `fnv1a32(key) & (stripeCount - 1)`. */
  stripeOf(key: string): number {
    if (typeof key !== 'string') throw new TypeError('key must be a string');
    return fnv1a32(key) & this.#mask;
  }

  /**
   * Resolves with a region holding `key`'s stripe. FIFO per stripe; a free stripe is granted in this call (the
   * returned promise is already resolved). Rejects with `LockAbortedError`, `LockTimeoutError` or
   * `LockDisposedError`; with `TypeError`/`RangeError` for bad arguments.
   */
  acquire(key: string, options?: AcquireOptions): Promise<WriteRegion> {
    if (typeof key !== 'string') return Promise.reject(new TypeError('key must be a string'));
    const table = this.#table;
    if (options !== undefined) {
      const bad = checkOptions(options);
      if (bad !== undefined) return Promise.reject(bad);
    }
    if (table.disposed) return Promise.reject(new LockDisposedError());
    const stripe = fnv1a32(key) & this.#mask;
    if (options === undefined) {
      if (table.holders[stripe] === null) return Promise.resolve(table.grantFree(stripe));
      return this.#wait(table.singleton(stripe), undefined, undefined);
    }
    const { signal, timeoutMs } = options;
    if (signal?.aborted === true) return Promise.reject(new LockAbortedError(signal.reason));
    if (table.holders[stripe] === null) return Promise.resolve(table.grantFree(stripe));
    return this.#wait(table.singleton(stripe), signal, timeoutMs);
  }

  /**
   * Resolves with ONE region holding the distinct stripes of all `keys`, taken in ascending stripe order (so callers
   * naming the same keys in any order never deadlock). On abort, timeout or dispose it gives back the stripes it
   * already took. An empty `keys` resolves with a region of no stripes.
   */
  acquireMany(keys: Iterable<string>, options?: AcquireOptions): Promise<WriteRegion> {
    if (keys === null || typeof keys !== 'object' || typeof (keys as Partial<Iterable<string>>)[Symbol.iterator] !== 'function') {
      if (typeof keys === 'string') return Promise.reject(new TypeError('keys must be an iterable of strings, not a string'));
      return Promise.reject(new TypeError('keys must be an iterable of strings'));
    }
    const set = new Set<number>();
    for (const key of keys) {
      if (typeof key !== 'string') return Promise.reject(new TypeError('every key must be a string'));
      set.add(fnv1a32(key) & this.#mask);
    }
    if (options !== undefined) {
      const bad = checkOptions(options);
      if (bad !== undefined) return Promise.reject(bad);
    }
    const table = this.#table;
    if (table.disposed) return Promise.reject(new LockDisposedError());
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(new LockAbortedError(signal.reason));
    const stripes = Array.from(set).sort((a, b) => a - b);
    return this.#wait(stripes, signal, options?.timeoutMs);
  }

  /** Takes what is free now; queues for the rest. */
  #wait(stripes: readonly number[], signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<WriteRegion> {
    const table = this.#table;
    const region = stripes.length === 1 ? new Region(table, stripes[0]!) : new Region(table, -1, Object.freeze(stripes));
    const w = new StripeWaiter(region, stripes, table);
    if (table.advance(w)) return Promise.resolve(region);
    if (timeoutMs === 0) {
      // Try-lock: not free right now, so give up at once (and give back any stripes already taken).
      w.cancel(new LockTimeoutError(0));
      return w.promise;
    }
    w.arm(signal, timeoutMs);
    return w.promise;
  }

  /** Counters; see `StripedWriteLockStats`. */
  stats(): StripedWriteLockStats {
    const t = this.#table;
    return {
      stripeCount: this.stripeCount,
      held: t.held,
      waiters: t.waiters,
      acquisitions: t.acquisitions,
      contended: t.contended,
      peakHeld: t.peakHeld,
    };
  }

  /** Restarts `peakHeld` from the number of stripes held now. */
  resetPeak(): void {
    this.#table.peakHeld = this.#table.held;
  }

  /**
   * Rejects every waiter with `LockDisposedError` and refuses later acquisitions. Regions already granted stay
   * valid and may still be released. Calling it again does nothing.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#table.dispose();
  }

  /** Alias of `[Symbol.asyncDispose]()`. */
  dispose(): Promise<void> {
    return this[Symbol.asyncDispose]();
  }
}
