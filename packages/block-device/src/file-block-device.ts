import { constants, writeSync, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import * as nodePath from 'node:path';
import type { BlockDevice } from './block-device.js';
import { isValidBlockSize } from './block-device.js';
import {
  ClosedError,
  InvalidArgumentError,
  NotFoundError,
  PoisonedError,
  ReadOnlyError,
  toIoError,
} from './errors.js';
import { FileLock } from './lock-file.js';
import { ReaderEntry, readerMarks } from './readers.js';
import { checkBlockRange, checkBuffer, checkCount, checkOptions } from './range.js';

export interface FileBlockDeviceOptions {
  /** Create the file (empty, 0 blocks) if it does not exist. Default false. Not allowed with `readOnly`. */
  create?: boolean;
  /** Bytes per block: a power of two from 512 to 65,536. Default 4096. */
  blockSize?: number;
  /**
   * Open O_RDONLY: writes and grow throw `ReadOnlyError`; no lock is taken, but the open registers in the reader
   * table (`${path}.readers/`, see README) so that a writer can keep what it reads. That needs write access to the
   * directory (`IoError` with `errno` EACCES or EPERM without it); on a read-only file system (EROFS) the open
   * registers nothing. Default false.
   */
  readOnly?: boolean;
  /** Take the one-writer advisory lock (`${path}.lock`), or with `readOnly` register as a reader. Default true. */
  lock?: boolean;
}

/**
 * The device's `FileHandle`, for tests that inject faults (a failing `datasync`, short writes).
 * @internal Not exported from the package entry point.
 */
// Assigned in the class's static block (which runs when the class is defined).
export let fileHandleOf: (device: FileBlockDevice) => FileHandle;

/**
 * The device's `O_DSYNC` handle used by `writeDurable`: undefined until the first `writeDurable` opens it, null if
 * it could not be opened (then `writeDurable` always falls back to write + sync). For fault-injection tests.
 * @internal Not exported from the package entry point.
 */
export let durableHandleOf: (device: FileBlockDevice) => FileHandle | null | undefined;

/**
 * A `BlockDevice` on one file, using positioned reads and writes on a single `FileHandle`.
 *
 * Thread safety: any number of reads, writes, grows and syncs may be in flight at once; there is no
 * device-wide lock and no seek. I/O on different blocks overlaps on libuv's thread pool.
 *
 * Awaits inside critical sections: `sync()` awaits the writes that started before it, then the fsync; a write
 * that starts while that fsync is in flight is not covered by it (it is covered by the next `sync()`).
 * `writeDurable` decides synchronously, when it is called, whether one `O_DSYNC` write suffices (nothing completed
 * is unsynced, the size is synced); the first call awaits opening the `O_DSYNC` handle and decides after that.
 *
 * Failure: a rejected fsync (or durable write) poisons the device for good (every later write, grow and sync rejects with
 * `PoisonedError`), because the kernel may have dropped the dirty pages and a retried fsync could succeed
 * without them. Reads still work. Close and reopen to recover.
 */
export class FileBlockDevice implements BlockDevice {
  readonly path: string;
  readonly blockSize: number;
  readonly readOnly: boolean;
  #handle: FileHandle;
  #lock: FileLock | undefined;
  /** This read-only open's entry in the reader table. */
  readonly #reader: ReaderEntry | undefined;
  #blockCount: number;
  #fileSizeBytes: number;
  /** File size when the last successful sync started; a size change makes the next sync a full `sync()`. */
  #syncedSizeBytes: number;
  /** Writes and grows in flight: `sync()` waits for the ones that started before it. */
  readonly #pendingWrites = new Set<Promise<unknown>>();
  /** Every operation in flight: `close()` waits for all of them. */
  readonly #pendingOps = new Set<Promise<unknown>>();
  /**
   * Writes and grows that have returned from the OS (successfully or not), counted after the syscall returned.
   * Completions are monotone, so a count names a prefix of the completion order.
   */
  #completedWrites = 0;
  /** The last grow queued (settled, never rejected): grows are serialized behind it. */
  #growing: Promise<void> = Promise.resolve();
  /**
   * `#completedWrites` as it was when the last successful fsync was issued: the first `#syncedWrites` completed
   * writes are durable. `#completedWrites === #syncedWrites` means no completed write is unsynced.
   */
  #syncedWrites = 0;
  /** The `O_DSYNC` handle (`writeDurable`): undefined until opened, null if unavailable. Never for read-only. */
  #durableHandle: FileHandle | null | undefined = undefined;
  #durableOpening: Promise<FileHandle | null> | undefined;
  /** Identity of the file behind `#handle`: the `O_DSYNC` handle, opened later by path, must be the same file. */
  readonly #dev: number;
  readonly #ino: number;
  #poison: unknown = undefined;
  #poisoned = false;
  #closing: Promise<void> | undefined;

  /**
   * True if this open created the file (`create`, and no file was there): only then may a caller that fails to
   * format it remove it again. Decided by the exclusive create itself, so an open that raced another open which
   * created the file first sees false.
   */
  get created(): boolean {
    return this.#created;
  }

  #created = false;

  private constructor(
    path: string,
    handle: FileHandle,
    blockSize: number,
    st: { size: number; dev: number; ino: number },
    readOnly: boolean,
    lock: FileLock | undefined,
    reader: ReaderEntry | undefined,
  ) {
    const sizeBytes = st.size;
    this.#reader = reader;
    this.#dev = st.dev;
    this.#ino = st.ino;
    this.path = path;
    this.#handle = handle;
    this.blockSize = blockSize;
    this.readOnly = readOnly;
    this.#lock = lock;
    this.#fileSizeBytes = sizeBytes;
    this.#syncedSizeBytes = sizeBytes;
    this.#blockCount = Math.floor(sizeBytes / blockSize);
  }

  /** Opens (or with `create`, creates) the file at `path`. See `FileBlockDeviceOptions`. */
  static async open(path: string, options: FileBlockDeviceOptions = {}): Promise<FileBlockDevice> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new InvalidArgumentError(`path must be a non-empty string, got ${String(path)}`);
    }
    checkOptions(options, 'file block device options');
    if (path.includes('\0')) throw new InvalidArgumentError(`path must not contain a NUL character: ${JSON.stringify(path)}`);
    const blockSize = options.blockSize ?? 4096;
    if (!isValidBlockSize(blockSize)) {
      throw new InvalidArgumentError(`blockSize must be a power of two from 512 to 65536, got ${String(blockSize)}`);
    }
    const readOnly = options.readOnly ?? false;
    const create = options.create ?? false;
    if (readOnly && create) throw new InvalidArgumentError('create and readOnly cannot be combined');

    // Fail a missing file, or one that is not a regular file, before touching the lock file or the reader table. A
    // read-only open of a FIFO would block in open(2) until a writer came (for ever, and a thread of libuv's pool
    // with it), and one of a directory would count the directory's size as blocks.
    let existing: Stats | undefined;
    try {
      existing = await stat(path);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw toIoError(err, `opening ${path}`);
      if (!create) throw new NotFoundError(`no container file at ${path}`);
    }
    if (existing !== undefined) {
      checkRegularFile(path, existing);
    } else {
      // A missing directory would surface as a failure to create the lock's identity file: name the directory.
      const dir = nodePath.dirname(path);
      try {
        await stat(dir);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENOENT') throw new NotFoundError(`cannot create ${path}: the directory ${dir} does not exist`);
        throw toIoError(err, `opening ${path}`);
      }
    }

    const lock = !readOnly && options.lock !== false ? await FileLock.acquire(path) : undefined;
    // A reader registers before it reads anything (see readers.ts): a writer then keeps what it may read.
    const reader = readOnly && options.lock !== false ? await ReaderEntry.create(path) : undefined;
    let handle: FileHandle | undefined;
    try {
      let created: boolean;
      ({ handle, created } = await openHandle(path, readOnly, create));
      const st = await handle.stat();
      checkRegularFile(path, st); // the path may have been replaced since the look above
      lock?.bindIdentity(path, st.dev, st.ino);
      reader?.bindIdentity(st.dev, st.ino);
      const device = new FileBlockDevice(path, handle, blockSize, st, readOnly, lock, reader);
      device.#created = created;
      return device;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await lock?.release().catch(() => undefined);
      await reader?.release().catch(() => undefined);
      throw err;
    }
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  /** The file's size in bytes (may exceed `blockCount * blockSize` by a partial trailing block). */
  get fileSizeBytes(): number {
    return this.#fileSizeBytes;
  }

  async read(blockNo: number, count: number): Promise<Uint8Array> {
    this.#checkOpen();
    checkCount(count);
    checkBlockRange(blockNo, count * this.blockSize, this.blockSize, this.#blockCount);
    const buffer = new Uint8Array(count * this.blockSize);
    await this.#track(this.#readFully(buffer, blockNo * this.blockSize), false);
    return buffer;
  }

  async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    this.#checkOpen();
    checkBuffer(buffer, 'buffer');
    checkBlockRange(blockNo, buffer.byteLength, this.blockSize, this.#blockCount);
    await this.#track(this.#readFully(buffer, blockNo * this.blockSize), false);
  }

  async write(blockNo: number, data: Uint8Array): Promise<void> {
    this.#checkWritable();
    checkBuffer(data, 'data');
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.#blockCount);
    await this.#track(this.#writeFully(data, blockNo * this.blockSize), true);
  }

  /**
   * `write(blockNo, data)` then `sync()`, in one positioned write on an `O_DSYNC` descriptor when that is
   * equivalent: when no completed write is unsynced and the file size is the synced size. Otherwise (or where
   * `O_DSYNC` is unavailable) it calls `write` then `sync`. When it resolves, `data`, every write that resolved
   * before the call and the file size are durable. An I/O failure on either path poisons the device as a failed
   * `sync()` does (argument, closed, read-only and poisoned checks throw first and poison nothing).
   */
  async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
    this.#checkWritable();
    checkBuffer(data, 'data');
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.#blockCount);
    let handle = this.#durableHandle;
    if (handle === undefined) {
      handle = await this.#track((this.#durableOpening ??= this.#openDurableHandle()), false);
      this.#checkWritable(); // closed or poisoned while the handle opened (blockCount only grows: range still fine)
    }
    // Decided synchronously: the writes that completed before this point are all we must cover (the ones that
    // completed before the call are among them).
    if (handle === null || this.#completedWrites !== this.#syncedWrites || this.#fileSizeBytes !== this.#syncedSizeBytes) {
      try {
        await this.write(blockNo, data);
      } catch (err) {
        // Same contract on both paths: a writeDurable that fails leaves the device poisoned.
        this.#poisonWith(err);
        throw err;
      }
      await this.sync(); // poisons on failure
      return;
    }
    await this.#track(this.#writeDurableFully(handle, data, blockNo * this.blockSize), true);
  }

  /**
   * `writeDurable` on the calling thread, as one positioned write on the `O_DSYNC` descriptor, when that suffices
   * now: the descriptor is open (the first `writeDurable` opens it), no completed write is unsynced and the file
   * size is the synced size. Otherwise false, having written nothing. Blocks the thread until the disk has the
   * bytes. An I/O failure poisons the device and throws `IoError` (`FullError` for ENOSPC).
   */
  writeDurableSync(blockNo: number, data: Uint8Array): boolean {
    this.#checkWritable();
    checkBuffer(data, 'data');
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.#blockCount);
    const handle = this.#durableHandle;
    if (!handle || this.#completedWrites !== this.#syncedWrites || this.#fileSizeBytes !== this.#syncedSizeBytes) return false;
    const position = blockNo * this.blockSize;
    try {
      let done = 0;
      while (done < data.byteLength) done += writeSync(handle.fd, data, done, data.byteLength - done, position + done);
    } catch (err) {
      this.#poisonWith(err);
      throw toIoError(
        err,
        `durable write of ${data.byteLength} bytes at offset ${position} of ${this.path} failed; the device is now poisoned, reopen it to recover`,
      );
    }
    return true;
  }

  async grow(blockCount: number): Promise<void> {
    this.#checkWritable();
    checkCount(blockCount);
    if (blockCount <= this.#blockCount) return;
    // Grows run one after another: two ftruncates in flight could land in either order, and a smaller one landing
    // last would shrink the file under blocks already counted (and written). Each grow re-checks when its turn comes.
    const run = this.#growing.then(() => {
      if (blockCount <= this.#blockCount) return;
      return this.#truncate(blockCount * this.blockSize, blockCount);
    });
    this.#growing = run.catch(() => undefined);
    await this.#track(run, true);
  }

  /**
   * Sets this read-only open's mark in the reader table (VDE: the checkpoint generation it reads); a no-op for a
   * writable device or one opened with `lock: false`.
   */
  async setReaderMark(mark: number): Promise<void> {
    this.#checkOpen();
    if (!Number.isSafeInteger(mark) || mark < 0) throw new InvalidArgumentError(`a reader mark must be a non-negative integer, got ${String(mark)}`);
    await this.#reader?.setMark(mark);
  }

  /** The marks of the live read-only opens of this file, in any process (null: not set yet); stale entries are removed. */
  readerMarks(): Promise<(number | null)[]> {
    this.#checkOpen();
    return readerMarks(this.path, { dev: this.#dev, ino: this.#ino });
  }

  async sync(): Promise<void> {
    this.#checkOpen();
    if (this.readOnly) return;
    this.#checkNotPoisoned();
    // Writes that started before this call must land before the fsync is issued, or it would not cover them.
    const before = [...this.#pendingWrites];
    const done = (async () => {
      await Promise.allSettled(before);
      this.#checkNotPoisoned(); // another sync may have failed meanwhile
      const sizeBytes = this.#fileSizeBytes;
      const completed = this.#completedWrites; // every write completed by now is covered by the fsync below
      try {
        if (sizeBytes !== this.#syncedSizeBytes) await this.#handle.sync();
        else await this.#handle.datasync();
      } catch (err) {
        this.#poisonWith(err);
        throw toIoError(err, `sync of ${this.path} failed; the device is now poisoned, reopen it to recover`);
      }
      this.#syncedSizeBytes = sizeBytes;
      if (completed > this.#syncedWrites) this.#syncedWrites = completed;
    })();
    await this.#track(done, false);
  }

  /** Waits for all I/O in flight, closes the file and releases the lock. Idempotent; does not sync. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#pendingOps]);
      try {
        if (this.#durableHandle) await this.#durableHandle.close().catch(() => undefined);
        await this.#handle.close();
      } catch (err) {
        throw toIoError(err, `closing ${this.path}`);
      } finally {
        await this.#reader?.release().catch(() => undefined);
        await this.#lock?.release();
      }
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closing) throw new ClosedError(`the file block device ${this.path} is closed`);
  }

  #poisonWith(err: unknown): void {
    if (!this.#poisoned) {
      this.#poisoned = true;
      this.#poison = err;
    }
  }

  #checkNotPoisoned(): void {
    if (this.#poisoned) {
      throw new PoisonedError(`an earlier sync of ${this.path} failed; close and reopen the container to recover`, {
        cause: this.#poison,
      });
    }
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.readOnly) throw new ReadOnlyError(`the file block device ${this.path} is open read-only`);
    this.#checkNotPoisoned();
  }

  async #track<T>(op: Promise<T>, isWrite: boolean): Promise<T> {
    this.#pendingOps.add(op);
    if (isWrite) this.#pendingWrites.add(op);
    try {
      return await op;
    } finally {
      this.#pendingOps.delete(op);
      this.#pendingWrites.delete(op);
    }
  }

  /** Reads until `buffer` is full; bytes past the end of the file (a sparse tail) read as zeros. */
  async #readFully(buffer: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < buffer.byteLength) {
        const { bytesRead } = await this.#handle.read(buffer, done, buffer.byteLength - done, position + done);
        if (bytesRead === 0) {
          buffer.fill(0, done);
          return;
        }
        done += bytesRead;
      }
    } catch (err) {
      throw toIoError(err, `reading ${buffer.byteLength} bytes at offset ${position} of ${this.path}`);
    }
  }

  /** Writes all of `data`, retrying short writes; counts the write as completed (unsynced) when it returns. */
  async #writeFully(data: Uint8Array, position: number): Promise<void> {
    try {
      await writeAll(this.#handle, data, position);
    } catch (err) {
      throw toIoError(err, `writing ${data.byteLength} bytes at offset ${position} of ${this.path}`);
    } finally {
      this.#completedWrites++;
    }
  }

  /** Writes all of `data` through the `O_DSYNC` handle: durable when it returns. A failure poisons the device. */
  async #writeDurableFully(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
    try {
      await writeAll(handle, data, position);
    } catch (err) {
      // The kernel may have dropped the dirty pages of a failed synchronous write, exactly as for a failed fsync.
      this.#poisonWith(err);
      throw toIoError(
        err,
        `durable write of ${data.byteLength} bytes at offset ${position} of ${this.path} failed; the device is now poisoned, reopen it to recover`,
      );
    }
  }

  /** Opens the `O_DSYNC` handle; null (never a rejection) if the platform lacks it or the path is another file now. */
  async #openDurableHandle(): Promise<FileHandle | null> {
    const dsync = constants.O_DSYNC as number | undefined;
    let handle: FileHandle | null = null;
    if (typeof dsync === 'number' && dsync !== 0) {
      try {
        handle = await open(this.path, constants.O_RDWR | dsync);
        const st = await handle.stat();
        if (st.dev !== this.#dev || st.ino !== this.#ino) {
          await handle.close();
          handle = null;
        }
      } catch {
        await handle?.close().catch(() => undefined);
        handle = null;
      }
    }
    this.#durableHandle = handle;
    return handle;
  }

  async #truncate(sizeBytes: number, blockCount: number): Promise<void> {
    try {
      await this.#handle.truncate(sizeBytes);
    } catch (err) {
      throw toIoError(err, `growing ${this.path} to ${blockCount} blocks`);
    } finally {
      this.#completedWrites++;
    }
    // Concurrent grows: keep the largest.
    if (blockCount > this.#blockCount) {
      this.#blockCount = blockCount;
      this.#fileSizeBytes = sizeBytes;
    }
  }

  static {
    fileHandleOf = (device) => device.#handle;
    durableHandleOf = (device) => device.#durableHandle;
  }
}

/** Positioned write of all of `data`, retrying short writes (a write that makes no progress is EIO). */
async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await handle.write(data, done, data.byteLength - done, position + done);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    done += bytesWritten;
  }
}

/** Only a regular file holds blocks: anything else is the caller's mistake, refused with InvalidArgumentError. */
function checkRegularFile(path: string, st: Stats): void {
  if (st.isFile()) return;
  const what = st.isDirectory()
    ? 'a directory'
    : st.isFIFO()
      ? 'a FIFO (named pipe)'
      : st.isSocket()
        ? 'a socket'
        : st.isCharacterDevice() || st.isBlockDevice()
          ? 'a device file'
          : 'not a file';
  throw new InvalidArgumentError(`${path} is ${what}, not a regular file: a FileBlockDevice needs a regular file`);
}

async function openHandle(path: string, readOnly: boolean, create: boolean): Promise<{ handle: FileHandle; created: boolean }> {
  try {
    return { handle: await open(path, readOnly ? 'r' : 'r+'), created: false };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'ENOENT') throw toIoError(err, `opening ${path}`);
    if (!create) throw new NotFoundError(`no container file at ${path}`);
  }
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o666);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EEXIST') return openHandle(path, readOnly, false);
    throw toIoError(err, `creating ${path}`);
  }
  try {
    await syncDirectory(nodePath.dirname(nodePath.resolve(path)));
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
  return { handle, created: true };
}

/** fsyncs a directory so that a file just created in it keeps its name after a crash (a no-op on Windows). */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    throw toIoError(err, `syncing directory ${dir}`);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
