/**
 * A device of fixed-size blocks. Block numbers start at 0. Every read and write is a whole number of blocks.
 *
 * Contract:
 * - `write` resolves once the OS has the bytes; they are durable only after a later `sync()` resolves.
 * - `sync()` makes every write that resolved before it was called durable, and the device size too.
 * - `writeDurable(b, d)` (optional) is `write(b, d)` followed by `sync()` in one call: when it resolves, these
 *   blocks, every write that resolved before the call and the device size are durable. Callers that find it
 *   absent call `write` then `sync` themselves. `writeDurableSync(b, d)` (optional) does the same on the calling
 *   thread when it can (true), or nothing (false).
 * - After a crash, every block written but not synced may hold its old bytes, its new bytes, or a mix torn at
 *   512-byte sector boundaries. Synced blocks hold exactly what was written.
 * - Concurrent calls on different blocks are allowed and run in parallel; concurrent writes to one block
 *   leave one of them, undefined which.
 * - Out-of-range or partial-block I/O throws `OutOfRangeError` (`ERR_VDE_RANGE`); any call after `close()`
 *   throws `ClosedError` (`ERR_VDE_CLOSED`); OS failures throw `IoError`/`FullError`.
 */
export interface BlockDevice {
  /** Bytes per block: a power of two from 512 to 65,536. */
  readonly blockSize: number;
  /** Blocks the device holds now. */
  readonly blockCount: number;
  /** True if opened read-only: writes, grow and sync of writes throw `ReadOnlyError`. */
  readonly readOnly: boolean;
  /** Reads `count` blocks starting at `blockNo` into a new buffer. */
  read(blockNo: number, count: number): Promise<Uint8Array>;
  /** Reads `buffer.byteLength / blockSize` blocks starting at `blockNo` into `buffer`. */
  readInto(blockNo: number, buffer: Uint8Array): Promise<void>;
  /** Writes `data` (a whole number of blocks) starting at `blockNo`. */
  write(blockNo: number, data: Uint8Array): Promise<void>;
  /** Makes all completed writes and the current size durable. */
  sync(): Promise<void>;
  /**
   * Optional. Equivalent to `write(blockNo, data)` followed by `sync()`: when it resolves, `data` is durable, and
   * so is every write that resolved before this call and the device size. Writes still in flight when it is called
   * need not be covered (as with `sync()`). A failure poisons the device as a failed `sync()` does. A device
   * implements it when it can do this more cheaply than the two calls (for example with one `O_DSYNC` write);
   * wrappers may leave it out, and callers then fall back to `write` + `sync`.
   */
  writeDurable?(blockNo: number, data: Uint8Array): Promise<void>;
  /**
   * Optional, and only beside `writeDurable`. `writeDurable` done on the calling thread, for a caller with nothing
   * else to do while the disk works (a lone writer): returns true once it is done, with the same guarantee; returns
   * false, having written nothing, when it cannot do it in one cheap call now (the caller then uses `writeDurable`).
   * It blocks the thread for the write, so callers use it only while such writes are fast. Argument, closed,
   * read-only and poisoned checks throw as `writeDurable` rejects; an I/O failure poisons the device and throws.
   */
  writeDurableSync?(blockNo: number, data: Uint8Array): boolean;
  /**
   * Optional, for devices that other opens (other processes) can read at the same time: a read-only open records
   * the mark of what it reads (VDE: a checkpoint generation) in a reader table; a writer reads the live marks (null:
   * a reader that has not set its mark yet) to keep what they may read. `FileBlockDevice` implements both.
   */
  setReaderMark?(mark: number): Promise<void>;
  readerMarks?(): Promise<(number | null)[]>;
  /** Grows the device to `blockCount` blocks (new blocks read as zeros). Never shrinks. */
  grow(blockCount: number): Promise<void>;
  close(): Promise<void>;
}

export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 65_536;

/** True for the block sizes VDE supports: powers of two from 512 to 65,536. */
export function isValidBlockSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0;
}
