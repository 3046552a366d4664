/**
 * StripedWriteLock: per-key write exclusion with a fixed number of stripes. A key maps to stripe
 * `fnv1a32(key) & (stripeCount - 1)`; writers on different stripes never wait for each other, writers on one stripe
 * are granted strictly in the order they joined that stripe's queue.
 *
 * Thread safety: every state change (acquire, release, abort, timeout, dispose) is synchronous; there is no `await`
 * inside this module, so each one is atomic. Grants resolve promises, whose continuations run later as microtasks.
 *
 * Invariants (checked by the tests):
 * - `busy[s]` is 1 while a region owns stripe `s` (granted, or being assembled by `acquireMany`), else 0; `held` is
 *   the number of ones.
 * - A region frees its stripes at most once (its `released` flag), and only stripes it owns.
 * - A stripe's queue is non-empty only while the stripe is held (release hands the stripe straight to the head).
 * - `heads[s]` is the first waiter of stripe `s`'s queue (a doubly linked list); the head's `last` is its tail.
 * - An unsettled request sits in exactly one queue: the one of the first stripe it still lacks.
 * - `acquireMany` takes its stripes in ascending order, so requests wait only for higher-numbered stripes than any
 *   they hold: no cycle of waiting, no deadlock.
 */
import { LockAbortedError, LockDisposedError, LockTimeoutError } from './errors.js';
import { fnv1a32 } from './fnv1a.js';
import {
  abortReason,
  arm,
  disarm,
  readOptions,
  signalAborted,
  type AcquireOptions,
  type Armed,
  type Cancellable,
  type ReadOptions,
} from './waiter.js';

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
 * A grant. It frees its stripes once: `released` turns true on the first `release()` (or when its request is
 * cancelled before the grant), and every later call returns at once, so a stale region never frees a stripe that
 * another region now holds. A region of one stripe (the common case) keeps it in `stripe` and shares the table's
 * frozen one-element array for `stripes`.
 *
 * Made by `newRegion`, never with `new`: see there. Its four fields are all it has (they fit in the object).
 */
class Region implements WriteRegion {
  declare readonly table: StripeTable;
  /** The only stripe, or -1 when the region has `many` stripes (or none). */
  declare readonly stripe: number;
  /** The stripes of an `acquireMany` region (frozen, ascending), or null for a one-stripe region. */
  declare readonly many: readonly number[] | null;
  declare released: boolean;

  get stripes(): readonly number[] {
    return this.many ?? this.table.singleton(this.stripe);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const { table, many } = this;
    if (many === null) {
      table.free(this.stripe);
      return;
    }
    for (let i = 0; i < many.length; i++) table.free(many[i]!);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

/**
 * A request that could not take all its stripes at once, queued on the first one it lacks. The region it will be
 * granted is made up front, so the grant resolves the promise with an object that already exists. `armed` is null
 * unless the caller passed a signal or a timeout.
 */
class StripeWaiter implements Cancellable {
  /** How many stripes of `region.many` it holds (a one-stripe request holds nothing while it waits). */
  taken = 0;
  /** The stripe whose queue it is in; -1 once granted or cancelled (a waiting request is always in a queue). */
  queuedOn = -1;
  prev: StripeWaiter | null = null;
  next: StripeWaiter | null = null;
  /** Meaningful on the head of a queue only: the queue's last waiter. */
  last: StripeWaiter | null = null;
  armed: Armed | null = null;
  resolve!: (region: WriteRegion) => void;
  reject!: (error: unknown) => void;
  readonly promise: Promise<WriteRegion>;
  constructor(readonly region: Region) {
    // An inline executor: V8 inlines it into the Promise constructor (a shared named function is called instead).
    this.promise = new Promise<WriteRegion>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Abort or timeout: a no-op once the request left its queue (granted or cancelled). */
  cancel(error: Error): void {
    if (this.queuedOn >= 0) this.region.table.cancel(this, error);
  }
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };
const regionPrototype = Region.prototype;

/**
 * A new region: `Object.create` plus four stores, not `new Region(...)`. `Promise.resolve(region)` must look up
 * `region.then` (is it a thenable?), a walk up the prototype chain that cost about 200 instructions per uncontended
 * `acquire`. V8's optimizing compiler (Node 20) drops that lookup when it knows the object's map and that map has
 * no `then`: it does for an object made by `Object.create` and resolved before any other store, not for one made
 * by `new` (checked with instruction counts). Four properties fit inside an `Object.create` object (no backing
 * store), so a region has exactly four.
 */
function newRegion(table: StripeTable, stripe: number, many: readonly number[] | null): Region {
  const region = Object.create(regionPrototype) as Writable<Region>;
  region.table = table;
  region.stripe = stripe;
  region.many = many;
  region.released = false;
  return region;
}

/** The mutable state behind a `StripedWriteLock`, shared with its regions and waiters. */
class StripeTable {
  /**
   * 1 while stripe `s` is owned, else 0. A flag rather than the owning region: storing a new object into this
   * long-lived array would cost a write barrier on every grant, and `released` already guards against stale frees.
   */
  readonly busy: Uint8Array;
  /**
   * The first waiter of each stripe's queue; the head keeps the queue's tail (`last`). Only heads are stored in this
   * long-lived array (storing a new object into an old one costs a write barrier): appending behind a head touches
   * the waiters only.
   */
  readonly heads: (StripeWaiter | null)[];
  /** Frozen `[s]` arrays, made on first use and shared by every one-stripe region of stripe `s`. */
  readonly singletons: (readonly number[] | null)[];
  held = 0;
  waiters = 0;
  acquisitions = 0;
  contended = 0;
  peakHeld = 0;
  disposed = false;

  constructor(stripeCount: number) {
    // Packed (not holey) arrays: `Array.from` fills every slot.
    this.busy = new Uint8Array(stripeCount);
    this.heads = Array.from({ length: stripeCount }, () => null);
    this.singletons = Array.from({ length: stripeCount }, () => null);
  }

  singleton(stripe: number): readonly number[] {
    return (this.singletons[stripe] ??= Object.freeze([stripe]));
  }

  /**
   * Fast path: grants the free `stripe` in this call and returns the already-resolved promise. `Promise.resolve`
   * comes right after `newRegion`, before any other store, so that V8 still knows the region's map there and skips
   * the `then` lookup (see `newRegion`).
   */
  grantFree(stripe: number): Promise<WriteRegion> {
    const region = newRegion(this, stripe, null);
    const granted = Promise.resolve<WriteRegion>(region);
    this.busy[stripe] = 1;
    if (++this.held > this.peakHeld) this.peakHeld = this.held;
    this.acquisitions++;
    return granted;
  }

  /**
   * Takes the stripes of an `acquireMany` request from `w.taken` on while they are free; queues on the first held
   * one. Returns true when it holds them all (granted; the caller settles the promise).
   */
  advance(w: StripeWaiter, many: readonly number[]): boolean {
    const { busy } = this;
    while (w.taken < many.length) {
      const s = many[w.taken]!;
      if (busy[s] !== 0) {
        this.enqueue(s, w);
        return false;
      }
      busy[s] = 1;
      if (++this.held > this.peakHeld) this.peakHeld = this.held;
      w.taken++;
    }
    this.acquisitions++;
    return true;
  }

  /**
   * Frees `stripe`, which the caller owns. With a queue, the stripe goes straight to the head waiter (the held count
   * does not change), which is granted in this call when that was the last stripe it lacked.
   */
  free(stripe: number): void {
    let w = this.heads[stripe] as StripeWaiter | null;
    // Never hand the stripe to a request whose signal has aborted (its abort is being dispatched, and the request
    // cancelled just before it, on the same signal, gave this stripe back): cancel it now instead.
    while (w !== null && w.armed !== null && signalAborted(w.armed)) {
      this.cancel(w, new LockAbortedError(abortReason(w.armed.signal!)));
      w = this.heads[stripe] as StripeWaiter | null;
    }
    if (w === null) {
      this.busy[stripe] = 0;
      this.held--;
      return;
    }
    // Dequeue the head.
    const next = w.next;
    this.heads[stripe] = next;
    if (next !== null) {
      next.prev = null;
      next.last = w.last;
      w.next = null;
    }
    w.last = null;
    w.queuedOn = -1;
    this.waiters--;
    // Hand over: the stripe stays busy.
    const granted = w.region;
    const many = granted.many;
    if (many === null) this.acquisitions++;
    else {
      w.taken++;
      if (!this.advance(w, many)) return; // queued on its next stripe
    }
    this.contended++;
    if (w.armed !== null) {
      disarm(w.armed);
      w.armed = null;
    }
    w.resolve(granted);
  }

  /** Takes `w` out of its queue, rejects it, and gives back the stripes it took (each to its own next waiter). */
  cancel(w: StripeWaiter, error: Error): void {
    if (w.queuedOn >= 0) this.dequeue(w.queuedOn, w);
    if (w.armed !== null) {
      disarm(w.armed);
      w.armed = null;
    }
    w.reject(error);
    const { region } = w;
    region.released = true;
    const many = region.many;
    if (many !== null) for (let i = 0; i < w.taken; i++) this.free(many[i]!);
  }

  /**
   * Arms the queued request `w` with its signal and timer. When the signal refuses the listener (a look-alike whose
   * `addEventListener` throws), `w` leaves its queue again and gives back what it took, rejected with a `TypeError`:
   * left queued, it would be granted to nobody and hold its stripe forever.
   */
  arm(w: StripeWaiter, signal: AbortSignal | undefined, timeoutMs: number | undefined): void {
    try {
      w.armed = arm(w, signal, timeoutMs);
    } catch (error) {
      this.cancel(w, new TypeError('options.signal.addEventListener failed', { cause: error }));
    }
  }

  enqueue(stripe: number, w: StripeWaiter): void {
    w.queuedOn = stripe;
    const head = this.heads[stripe] as StripeWaiter | null;
    if (head === null) {
      w.last = w;
      this.heads[stripe] = w;
    } else {
      const tail = head.last!;
      w.prev = tail;
      tail.next = w;
      head.last = w;
    }
    this.waiters++;
  }

  dequeue(stripe: number, w: StripeWaiter): void {
    const { prev, next } = w;
    if (prev === null) {
      // The head: its successor (if any) becomes the head and keeps the tail.
      this.heads[stripe] = next;
      if (next !== null) next.last = w.last;
    } else {
      prev.next = next;
      if (next === null) (this.heads[stripe] as StripeWaiter).last = prev;
    }
    if (next !== null) next.prev = prev;
    w.prev = w.next = w.last = null;
    w.queuedOn = -1;
    this.waiters--;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const doomed: StripeWaiter[] = [];
    for (let s = 0; s < this.heads.length; s++) {
      for (let w = this.heads[s] as StripeWaiter | null; w !== null; w = w.next) doomed.push(w);
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
    if (options === undefined) {
      if (table.disposed) return Promise.reject(new LockDisposedError());
      const stripe = fnv1a32(key) & this.#mask;
      if (table.busy[stripe] === 0) return table.grantFree(stripe);
      // Held: queue. No signal, no timer, so nothing to arm.
      const w = new StripeWaiter(newRegion(table, stripe, null));
      table.enqueue(stripe, w);
      return w.promise;
    }
    const o = readOptions(options);
    if (o instanceof Error) return Promise.reject(o);
    if (table.disposed) return Promise.reject(new LockDisposedError());
    const { signal, timeoutMs } = o;
    if (o.aborted) return Promise.reject(new LockAbortedError(abortReason(signal!)));
    const stripe = fnv1a32(key) & this.#mask;
    if (table.busy[stripe] === 0) return table.grantFree(stripe);
    if (timeoutMs === 0) return Promise.reject(new LockTimeoutError(0)); // try-lock: not free now
    const w = new StripeWaiter(newRegion(table, stripe, null));
    table.enqueue(stripe, w);
    table.arm(w, signal, timeoutMs);
    return w.promise;
  }

  /**
   * Resolves with ONE region holding the distinct stripes of all `keys`, taken in ascending stripe order (so callers
   * naming the same keys in any order never deadlock). On abort, timeout or dispose it gives back the stripes it
   * already took. An empty `keys` resolves with a region of no stripes.
   */
  acquireMany(keys: Iterable<string>, options?: AcquireOptions): Promise<WriteRegion> {
    const set = new Set<number>();
    try {
      if (keys === null || typeof keys !== 'object' || typeof (keys as Partial<Iterable<string>>)[Symbol.iterator] !== 'function') {
        if (typeof keys === 'string') return Promise.reject(new TypeError('keys must be an iterable of strings, not a string'));
        return Promise.reject(new TypeError('keys must be an iterable of strings'));
      }
      for (const key of keys) {
        if (typeof key !== 'string') return Promise.reject(new TypeError('every key must be a string'));
        set.add(fnv1a32(key) & this.#mask);
      }
    } catch (err) {
      // The caller's iterable failed while being read: a rejection like every other failure (nothing is held yet).
      return Promise.reject(err instanceof Error ? err : new TypeError(`reading keys failed: ${String(err)}`));
    }
    let o: ReadOptions | undefined;
    if (options !== undefined) {
      const read = readOptions(options);
      if (read instanceof Error) return Promise.reject(read);
      o = read;
    }
    const table = this.#table;
    if (table.disposed) return Promise.reject(new LockDisposedError());
    if (o?.aborted === true) return Promise.reject(new LockAbortedError(abortReason(o.signal!)));
    const many = Object.freeze(Array.from(set).sort((a, b) => a - b));
    const w = new StripeWaiter(newRegion(table, -1, many));
    if (table.advance(w, many)) return Promise.resolve(w.region); // all free (or no keys): granted now
    const timeoutMs = o?.timeoutMs;
    if (timeoutMs === 0) {
      // Try-lock: not all free right now, so give up at once (and give back the stripes already taken).
      table.cancel(w, new LockTimeoutError(0));
      return w.promise;
    }
    table.arm(w, o?.signal, timeoutMs);
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
