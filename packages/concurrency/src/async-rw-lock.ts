/**
 * AsyncRwLock: many shared holders or one exclusive holder, writer-preferring. All requests wait in ONE FIFO
 * queue; a request is granted only when every earlier request has been granted or cancelled. A shared request
 * skips the queue only when the queue is empty and no exclusive guard is out, so once an exclusive request
 * queues, later shared requests wait behind it: an exclusive waiter is never starved by a stream of readers.
 * Consecutive shared requests at the head of the queue are granted together.
 *
 * In VDE this is the checkpoint gate: stores hold it shared, `checkpoint()` exclusive.
 *
 * Thread safety: no `await` inside this module; each state change is synchronous and atomic.
 * Invariant: after every operation the head of the queue (if any) cannot be granted yet.
 */
import { LockAbortedError, LockDisposedError, LockTimeoutError } from './errors.js';
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

export type RwMode = 'shared' | 'exclusive';

/** A granted shared or exclusive hold; release it once (further releases are no-ops). */
export interface RwGuard extends Disposable, AsyncDisposable {
  readonly mode: RwMode;
  /** True once `release()` (or a dispose) ran. */
  readonly released: boolean;
  /** Gives the hold back. Idempotent: a second call never releases a hold someone else now has. */
  release(): void;
}

/** Counters of an `AsyncRwLock`, all "right now". */
export interface AsyncRwLockStats {
  readonly sharedHolders: number;
  readonly exclusiveHeld: boolean;
  readonly waitingShared: number;
  readonly waitingExclusive: number;
}

/** A grant; its identity is the token (each guard releases at most once). */
class Guard implements RwGuard {
  released = false;
  constructor(
    readonly mode: RwMode,
    private readonly state: RwState,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.state.release(this);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

/** A queued request; `armed` is null unless it has a signal or a timeout. */
class RwWaiter implements Cancellable {
  prev: RwWaiter | null = null;
  next: RwWaiter | null = null;
  settled = false;
  armed: Armed | null = null;
  resolve!: (guard: RwGuard) => void;
  reject!: (error: unknown) => void;
  readonly promise: Promise<RwGuard>;
  constructor(
    readonly mode: RwMode,
    private readonly state: RwState,
  ) {
    this.promise = new Promise<RwGuard>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  cancel(error: Error): void {
    if (this.settled) return;
    this.state.cancel(this, error);
  }

  /** Resolves with `guard` and drops the listener and the timer. */
  grant(guard: RwGuard): void {
    this.#disarm();
    this.resolve(guard);
  }

  /** Rejects with `error` and drops the listener and the timer. The waiter has already left the queue. */
  fail(error: Error): void {
    this.#disarm();
    this.reject(error);
  }

  #disarm(): void {
    this.settled = true;
    if (this.armed !== null) {
      disarm(this.armed);
      this.armed = null;
    }
  }
}

class RwState {
  sharedHolders = 0;
  exclusive: Guard | null = null;
  head: RwWaiter | null = null;
  tail: RwWaiter | null = null;
  waitingShared = 0;
  waitingExclusive = 0;
  disposed = false;

  /** Can `mode` be granted now, ignoring the queue? */
  free(mode: RwMode): boolean {
    return this.exclusive === null && (mode === 'shared' || this.sharedHolders === 0);
  }

  take(mode: RwMode): Guard {
    const guard = new Guard(mode, this);
    if (mode === 'shared') this.sharedHolders++;
    else this.exclusive = guard;
    return guard;
  }

  release(guard: Guard): void {
    if (guard.mode === 'exclusive') {
      if (this.exclusive !== guard) return;
      this.exclusive = null;
    } else {
      this.sharedHolders--;
    }
    this.drain();
  }

  /** Grants from the head while the head can be granted (restores the invariant). */
  drain(): void {
    for (let w = this.head; w !== null && this.free(w.mode); w = this.head) {
      this.dequeue(w);
      // Its signal aborted (the abort is being dispatched, and the request cancelled just before it on the same
      // signal is what made it grantable): cancel it, never grant it.
      if (w.armed !== null && signalAborted(w.armed)) w.fail(new LockAbortedError(abortReason(w.armed.signal!)));
      else w.grant(this.take(w.mode));
    }
  }

  cancel(w: RwWaiter, error: Error): void {
    this.dequeue(w);
    w.fail(error);
    // The cancelled waiter may have been what blocked the requests behind it (an exclusive waiter blocks later
    // shared ones even while only readers hold the lock).
    this.drain();
  }

  enqueue(w: RwWaiter): void {
    w.prev = this.tail;
    if (this.tail === null) this.head = w;
    else this.tail.next = w;
    this.tail = w;
    if (w.mode === 'shared') this.waitingShared++;
    else this.waitingExclusive++;
  }

  dequeue(w: RwWaiter): void {
    if (w.prev === null) this.head = w.next;
    else w.prev.next = w.next;
    if (w.next === null) this.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = w.next = null;
    if (w.mode === 'shared') this.waitingShared--;
    else this.waitingExclusive--;
  }

  request(mode: RwMode, options: AcquireOptions | undefined): Promise<RwGuard> {
    let o: ReadOptions | undefined;
    if (options !== undefined) {
      const read = readOptions(options);
      if (read instanceof Error) return Promise.reject(read);
      o = read;
    }
    if (this.disposed) return Promise.reject(new LockDisposedError());
    if (o?.aborted === true) return Promise.reject(new LockAbortedError(abortReason(o.signal!)));
    if (this.head === null && this.free(mode)) return Promise.resolve(this.take(mode));
    const timeoutMs = o?.timeoutMs;
    if (timeoutMs === 0) return Promise.reject(new LockTimeoutError(0));
    const w = new RwWaiter(mode, this);
    this.enqueue(w);
    try {
      w.armed = arm(w, o?.signal, timeoutMs);
    } catch (error) {
      // A look-alike signal refused the listener: leave the queue again (left there, the request would be granted
      // to nobody and hold the lock forever).
      this.cancel(w, new TypeError('options.signal.addEventListener failed', { cause: error }));
    }
    return w.promise;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const error = new LockDisposedError();
    for (let w = this.head; w !== null; w = this.head) {
      this.dequeue(w);
      w.fail(error);
    }
  }
}

/** Writer-preferring async readers-writer lock. */
export class AsyncRwLock implements AsyncDisposable {
  readonly #state = new RwState();

  /**
   * Resolves with a shared guard. Waits while an exclusive guard is out or any request is queued (writer
   * preference). Same rejections as `StripedWriteLock.acquire`.
   */
  shared(options?: AcquireOptions): Promise<RwGuard> {
    return this.#state.request('shared', options);
  }

  /** Resolves with an exclusive guard once every earlier request is done and no guard is out. */
  exclusive(options?: AcquireOptions): Promise<RwGuard> {
    return this.#state.request('exclusive', options);
  }

  stats(): AsyncRwLockStats {
    const s = this.#state;
    return {
      sharedHolders: s.sharedHolders,
      exclusiveHeld: s.exclusive !== null,
      waitingShared: s.waitingShared,
      waitingExclusive: s.waitingExclusive,
    };
  }

  /**
   * Rejects every waiter with `LockDisposedError` and refuses later requests. Guards already granted stay valid
   * and may still be released. Calling it again does nothing.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#state.dispose();
  }

  /** Alias of `[Symbol.asyncDispose]()`. */
  dispose(): Promise<void> {
    return this[Symbol.asyncDispose]();
  }
}
