/**
 * What both locks share: the acquire options, their validation, and the cancellation plumbing of a queued waiter
 * (abort listener + timeout timer, armed when it queues and disarmed the moment it is granted or cancelled, so a
 * granted waiter leaves no listener or timer behind).
 *
 * Thread safety: everything here runs synchronously; a waiter is cancelled from an `abort` event or a timer
 * callback, each of which runs to completion before any other lock code.
 */
import { LockAbortedError, LockTimeoutError, type LockError } from './errors.js';

/** Options of every acquire call. */
export interface AcquireOptions {
  /** Aborting it removes the waiter from the queue and rejects with `LockAbortedError` (`cause` = `signal.reason`). */
  readonly signal?: AbortSignal | undefined;
  /**
   * Give up after this many milliseconds with `LockTimeoutError`. `0` means "only if free right now" (a try-lock,
   * no timer). `Infinity`, `undefined`, and values above 2^31 - 1 (about 24.8 days, the timer limit) wait forever.
   */
  readonly timeoutMs?: number | undefined;
}

/** Largest delay `setTimeout` honours; longer ones would fire at once, so they mean "no timeout" here. */
const MAX_TIMER_MS = 0x7fffffff;

/** Returns the argument error to reject with, or `undefined` when the options are valid. */
export function checkOptions(options: unknown): Error | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') return new TypeError('options must be an object');
  const { signal, timeoutMs } = options as { signal?: unknown; timeoutMs?: unknown };
  if (signal !== undefined && !isAbortSignal(signal)) return new TypeError('options.signal must be an AbortSignal');
  if (timeoutMs !== undefined) {
    if (typeof timeoutMs !== 'number') return new TypeError('options.timeoutMs must be a number');
    if (Number.isNaN(timeoutMs) || timeoutMs < 0) {
      return new RangeError(`options.timeoutMs must be >= 0, got ${String(timeoutMs)}`);
    }
  }
  return undefined;
}

function isAbortSignal(value: unknown): value is AbortSignal {
  if (value instanceof AbortSignal) return true;
  // Accept a signal from another realm (vm context, jsdom) that quacks like one.
  const v = value as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.aborted === 'boolean' &&
    typeof v.addEventListener === 'function' &&
    typeof v.removeEventListener === 'function'
  );
}

/** True when `timeoutMs` asks for a real timer (finite, positive, within the timer range). */
function needsTimer(timeoutMs: number | undefined): timeoutMs is number {
  return timeoutMs !== undefined && timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS;
}

/**
 * A queued request. Subclasses say how to leave their lock's queue (`cancel`); the base class owns the promise and
 * the signal/timer wiring. `settled` guards against a second settlement (abort racing a timeout, dispose racing
 * both): the first one wins and disarms the others.
 */
export abstract class Waiter<T> {
  // Plain (not #private) fields: this object is allocated on every contended acquire, keep it lean.
  readonly promise: Promise<T>;
  settled = false;
  private resolveFn!: (value: T) => void;
  private rejectFn!: (error: unknown) => void;
  private signal: AbortSignal | undefined = undefined;
  private onAbort: (() => void) | undefined = undefined;
  private timer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  /** Wires the signal and the timer. Call once, after the waiter is in its queue. */
  arm(signal: AbortSignal | undefined, timeoutMs: number | undefined): void {
    if (signal === undefined && timeoutMs === undefined) return;
    if (signal !== undefined) {
      const onAbort = (): void => {
        this.cancel(new LockAbortedError(signal.reason));
      };
      this.signal = signal;
      this.onAbort = onAbort;
      signal.addEventListener('abort', onAbort, { once: true });
    }
    if (needsTimer(timeoutMs)) {
      this.timer = setTimeout(() => {
        this.cancel(new LockTimeoutError(timeoutMs));
      }, timeoutMs);
    }
  }

  /** Settles with the granted value and drops the listener and the timer. */
  grant(value: T): void {
    this.settled = true;
    this.disarm();
    this.resolveFn(value);
  }

  /** Settles with `error` and drops the listener and the timer. The subclass has already left its queue. */
  fail(error: unknown): void {
    this.settled = true;
    this.disarm();
    this.rejectFn(error);
  }

  /** Leave the lock's queue, give back anything held, and `fail(error)`. No-op once settled. */
  abstract cancel(error: LockError): void;

  private disarm(): void {
    if (this.onAbort !== undefined) {
      this.signal!.removeEventListener('abort', this.onAbort);
      this.onAbort = undefined;
      this.signal = undefined;
    }
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}
