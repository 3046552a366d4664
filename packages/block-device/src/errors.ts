/**
 * Every error VDE throws is a `VdeError` with a stable `code`. Callers branch on `code` (or `instanceof`),
 * never on the message, which is for people and may change.
 */
export type VdeErrorCode =
  | 'ERR_VDE_NOT_FOUND'
  | 'ERR_VDE_INVALID_KEY'
  | 'ERR_VDE_INVALID_ARGUMENT'
  | 'ERR_VDE_TOO_LARGE'
  | 'ERR_VDE_CORRUPT'
  | 'ERR_VDE_CLOSED'
  | 'ERR_VDE_LOCKED'
  | 'ERR_VDE_FULL'
  | 'ERR_VDE_ABORTED'
  | 'ERR_VDE_FORMAT'
  | 'ERR_VDE_RANGE'
  | 'ERR_VDE_IO'
  | 'ERR_VDE_READ_ONLY'
  | 'ERR_VDE_POISONED'
  | 'ERR_VDE_EXISTS'
  | 'ERR_VDE_SOURCE';

export class VdeError extends Error {
  readonly code: VdeErrorCode;
  constructor(code: VdeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A key, snapshot or other named thing does not exist. */
export class NotFoundError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_NOT_FOUND', message);
  }
}

/** A key is empty, too long, not a string, or holds a lone surrogate. */
export class InvalidKeyError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_INVALID_KEY', message);
  }
}

/** An option or argument has the wrong type or is out of its allowed range. */
export class InvalidArgumentError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_INVALID_ARGUMENT', message);
  }
}

/** A value, key or metadata is larger than the format allows. */
export class TooLargeError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_TOO_LARGE', message);
  }
}

/** Bytes read from the container failed a checksum or a structural check. `what` names the damaged thing. */
export class CorruptionError extends VdeError {
  readonly what: string;
  constructor(what: string, message: string) {
    super('ERR_VDE_CORRUPT', `${what}: ${message}`);
    this.what = what;
  }
}

/** The device, log or engine was closed; reopen it. */
export class ClosedError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_CLOSED', message);
  }
}

/** Another process holds the container open for writing. */
export class LockedError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_LOCKED', message);
  }
}

/** No space is left: the disk, the configured `maxSizeBytes`, or a fixed region such as the log. */
export class FullError extends VdeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VDE_FULL', message, options);
  }
}

/** The caller's `AbortSignal` fired before the operation took effect. */
export class AbortedError extends VdeError {
  constructor(message = 'The operation was aborted before it took effect', options?: { cause?: unknown }) {
    super('ERR_VDE_ABORTED', message, options);
  }
}

/** The file is not a VDE container, or was written by a newer format version. */
export class FormatError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_FORMAT', message);
  }
}

/** A block number or length is outside the device, or not a whole number of blocks. */
export class OutOfRangeError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_RANGE', message);
  }
}

/** The operating system reported an I/O error (`cause` holds Node's error, with `code` such as `EIO`). */
export class IoError extends VdeError {
  readonly errno: string | undefined;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VDE_IO', message, options);
    const cause = options?.cause as { code?: unknown } | undefined;
    this.errno = typeof cause?.code === 'string' ? cause.code : undefined;
  }
}

/** A write was attempted on something opened read-only. */
export class ReadOnlyError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_READ_ONLY', message);
  }
}

/**
 * A sync failed earlier. The kernel may have dropped the unsynced pages, so no later write can be trusted:
 * close and reopen (which recovers from the log).
 */
export class PoisonedError extends VdeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VDE_POISONED', message, options);
  }
}

/**
 * The caller's data source (an AsyncIterable, Readable or ReadableStream given to a store) failed while it was
 * read: `cause` holds what it threw. Nothing of that store took effect.
 */
export class SourceError extends VdeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VDE_SOURCE', message, options);
  }
}

/** Something with that name already exists (a named snapshot, a container opened with `create: 'new'`). */
export class ExistsError extends VdeError {
  constructor(message: string) {
    super('ERR_VDE_EXISTS', message);
  }
}

/** Turns an error from `node:fs` into a typed one; ENOSPC and EDQUOT become `FullError`. */
export function toIoError(err: unknown, what: string): VdeError {
  if (err instanceof VdeError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new FullError(`${what}: no space left (${String(code)})`, { cause: err });
  }
  return new IoError(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
