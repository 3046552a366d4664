/**
 * Errors of @vde/concurrency. The package has no dependencies, so it has its own small hierarchy: callers branch on
 * `code` (or `instanceof`), never on the message.
 */
export type LockErrorCode = 'ERR_LOCK_ABORTED' | 'ERR_LOCK_TIMEOUT' | 'ERR_LOCK_DISPOSED';

/** Base class of every error a lock rejects with (argument errors are plain `TypeError` / `RangeError`). */
export class LockError extends Error {
  readonly code: LockErrorCode;
  constructor(code: LockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The waiter's `AbortSignal` aborted before the lock was granted. `cause` is the signal's `reason`. */
export class LockAbortedError extends LockError {
  constructor(reason: unknown) {
    super('ERR_LOCK_ABORTED', 'lock acquisition was aborted before the lock was granted', { cause: reason });
  }
}

/** `timeoutMs` passed before the lock was granted. */
export class LockTimeoutError extends LockError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super('ERR_LOCK_TIMEOUT', `lock was not granted within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** The lock was disposed: waiters are rejected and new acquisitions are refused. */
export class LockDisposedError extends LockError {
  constructor() {
    super('ERR_LOCK_DISPOSED', 'the lock has been disposed; create a new lock');
  }
}
