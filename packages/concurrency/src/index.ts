export { StripedWriteLock, type WriteRegion, type StripedWriteLockStats } from './striped-write-lock.js';
export { AsyncRwLock, type RwGuard, type RwMode, type AsyncRwLockStats } from './async-rw-lock.js';
export { LockError, LockAbortedError, LockTimeoutError, LockDisposedError, type LockErrorCode } from './errors.js';
export { fnv1a32 } from './fnv1a.js';
export type { AcquireOptions } from './waiter.js';
