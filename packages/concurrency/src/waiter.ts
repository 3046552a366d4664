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
 * One abort listener per signal, however many queued requests (of any lock) wait with that signal: a server that
 * passes one shutdown signal to every call would otherwise add a listener per waiting request, and Node prints a
 * `MaxListenersExceededWarning` from the 11th on (there is no leak: each is removed at the grant). `waiters` are the
 * requests the signal may still cancel, in the order they were armed (the order their own listeners used to run).
 */
interface SignalWatch {
  readonly waiters: Set<Cancellable>;
  readonly onAbort: () => void;
}

const watches = new WeakMap<AbortSignal, SignalWatch>();

/** Adds `target` to `signal`'s watch, registering the listener first if it has none. Throws what registering throws. */
function watch(signal: AbortSignal, target: Cancellable): void {
  let w = watches.get(signal);
  if (w === undefined) {
    const waiters = new Set<Cancellable>();
    const onAbort = (): void => {
      watches.delete(signal);
      const reason = abortReason(signal);
      // A snapshot: cancelling one request can grant another (stripes given back), whose disarm then finds no watch.
      // A granted request is settled, so its `cancel` is a no-op, as its own listener's was before the grant.
      const doomed = Array.from(waiters);
      waiters.clear();
      for (const t of doomed) t.cancel(new LockAbortedError(reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    w = { waiters, onAbort };
    watches.set(signal, w);
  }
  w.waiters.add(target);
}

/** Takes `target` off `signal`'s watch; the last one out removes the listener. */
function unwatch(signal: AbortSignal, target: Cancellable): void {
  const w = watches.get(signal);
  if (w === undefined || !w.waiters.delete(target) || w.waiters.size > 0) return;
  watches.delete(signal);
  try {
    signal.removeEventListener('abort', w.onAbort);
  } catch {
    // A look-alike signal that cannot remove its listener: it runs at most once more and finds no watch or only
    // settled requests (no-ops). Throwing here would abort a grant or a release half way.
  }
}

/**
 * The cancellation wiring of one queued request: its signal (watched) and its timer. Only requests that pass a
 * `signal` or a finite positive `timeoutMs` get one; the common case (no options) allocates nothing for it.
 */
export class Armed {
  constructor(
    readonly target: Cancellable,
    readonly signal: AbortSignal | undefined,
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
  if (signal !== undefined) watch(signal, target);
  const timer = timed
    ? setTimeout(() => {
        target.cancel(new LockTimeoutError(timeoutMs));
      }, timeoutMs)
    : undefined;
  return new Armed(target, signal, timer);
}

/**
 * True when the signal of `armed` has aborted. Then its abort is being dispatched right now (cancelling one request
 * can hand a stripe or the lock to another request waiting on the same signal before that one's turn came), and
 * the request must be cancelled, not granted.
 */
export function signalAborted(armed: Armed): boolean {
  if (armed.signal === undefined) return false;
  try {
    return armed.signal.aborted;
  } catch {
    return false;
  }
}

/** Takes the request off its signal's watch and clears its timer. */
export function disarm(armed: Armed): void {
  if (armed.timer !== undefined) clearTimeout(armed.timer);
  if (armed.signal !== undefined) unwatch(armed.signal, armed.target);
}
