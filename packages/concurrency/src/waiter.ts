/**
 * What both locks share: the acquire options, their validation, the cancellation plumbing of a queued request
 * (abort listener + timeout timer, armed when it queues and disarmed the moment it is granted or cancelled, so a
 * granted request leaves no listener or timer behind).
 *
 * Thread safety: everything here runs synchronously; a waiter is cancelled from an `abort` event or a timer
 * callback, each of which runs to completion before any other lock code.
 */
import { LockAbortedError, LockTimeoutError } from './errors.js';

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

/** The options of one call, each read once (a getter or proxy runs once, before any lock state changes). */
export interface ReadOptions {
  readonly signal: AbortSignal | undefined;
  readonly timeoutMs: number | undefined;
  /** `signal.aborted` at the call. */
  readonly aborted: boolean;
}

/**
 * Reads and validates `options` (not undefined): the options, or the argument error to reject with. Reading runs
 * caller code (getters, proxies, a signal's `aborted` getter); whatever it throws becomes that rejection too, so an
 * acquire call never throws synchronously.
 */
export function readOptions(options: unknown): ReadOptions | Error {
  try {
    if (options === null || typeof options !== 'object') return new TypeError('options must be an object');
    const { signal, timeoutMs } = options as { signal?: unknown; timeoutMs?: unknown };
    if (signal !== undefined && !isAbortSignal(signal)) return new TypeError('options.signal must be an AbortSignal');
    if (timeoutMs !== undefined) {
      if (typeof timeoutMs !== 'number') return new TypeError('options.timeoutMs must be a number');
      if (Number.isNaN(timeoutMs) || timeoutMs < 0) {
        return new RangeError(`options.timeoutMs must be >= 0, got ${String(timeoutMs)}`);
      }
    }
    const aborted: unknown = signal !== undefined && signal.aborted;
    if (typeof aborted !== 'boolean') return new TypeError('options.signal.aborted must be a boolean');
    return { signal, timeoutMs, aborted };
  } catch (error) {
    return new TypeError('options could not be read', { cause: error });
  }
}

/** The reason of an aborted `signal` (its getter may throw: then that error is the reason). */
export function abortReason(signal: AbortSignal): unknown {
  try {
    return signal.reason;
  } catch (error) {
    return error;
  }
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

/** What a queued request must offer to be cancelled by its signal or its timer. */
export interface Cancellable {
  /** Leave the lock's queue, give back anything held, and reject. No-op once settled. */
  cancel(error: Error): void;
}

/**
 * The cancellation wiring of one queued request: its abort listener and its timer. Only requests that pass a
 * `signal` or a finite positive `timeoutMs` get one; the common case (no options) allocates nothing for it.
 */
export class Armed {
  constructor(
    readonly signal: AbortSignal | undefined,
    readonly onAbort: (() => void) | undefined,
    readonly timer: ReturnType<typeof setTimeout> | undefined,
  ) {}
}

/**
 * Wires `signal` and the `timeoutMs` timer to `target.cancel`. Call once, after the request is in its queue.
 * Returns null when there is nothing to wire (no signal, no timer needed). Throws what the signal's
 * `addEventListener` throws (then no timer is set): the caller must take the request out of its queue again, or it
 * would be granted later to nobody and hold the lock forever.
 */
export function arm(target: Cancellable, signal: AbortSignal | undefined, timeoutMs: number | undefined): Armed | null {
  const timed = needsTimer(timeoutMs);
  if (signal === undefined && !timed) return null;
  let onAbort: (() => void) | undefined;
  if (signal !== undefined) {
    onAbort = (): void => {
      target.cancel(new LockAbortedError(abortReason(signal)));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  }
  const timer = timed
    ? setTimeout(() => {
        target.cancel(new LockTimeoutError(timeoutMs));
      }, timeoutMs)
    : undefined;
  return new Armed(signal, onAbort, timer);
}

/** Drops the abort listener and clears the timer of `armed`. */
export function disarm(armed: Armed): void {
  if (armed.timer !== undefined) clearTimeout(armed.timer);
  if (armed.onAbort !== undefined) {
    try {
      armed.signal!.removeEventListener('abort', armed.onAbort);
    } catch {
      // A look-alike signal that cannot remove its listener: it runs at most once more and finds the request
      // settled (a no-op). Throwing here would abort a grant or a release half way.
    }
  }
}
