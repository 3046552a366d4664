import {
  checkBlockRange,
  ClosedError,
  InvalidArgumentError,
  MemoryBlockDevice,
  type BlockDevice,
} from '@vde/block-device';
import { SeededRandom } from './random.js';

/** Bytes per sector: the unit a torn write is mixed at. */
export const SECTOR_SIZE = 512;

export type FaultOp = 'read' | 'write' | 'sync' | 'any';
export type FaultErrorCode = 'EIO' | 'ENOSPC';
export type PowerCutMode = 'random' | 'drop-all' | 'keep-all';
const FAULT_OPS: readonly string[] = ['read', 'write', 'sync', 'any'];
const POWER_CUT_MODES: readonly string[] = ['random', 'drop-all', 'keep-all'];

export interface FaultyBlockDeviceCounters {
  /** `read` and `readInto` calls that succeeded. */
  reads: number;
  /** `write` calls that succeeded. */
  writes: number;
  /** `sync` calls that succeeded. */
  syncs: number;
  /** Bytes of the `write` calls that succeeded. */
  bytesWritten: number;
}

/** One write issued since the last successful sync. `data` is our own copy; `done` once the inner write resolved. */
interface PendingWrite {
  blockNo: number;
  data: Uint8Array;
  done: boolean;
}

interface Fault {
  countdown: number;
  code: FaultErrorCode;
  op: FaultOp;
  sticky: boolean;
  fired: boolean;
}

const ERRNO: Record<FaultErrorCode, { errno: number; text: string }> = {
  EIO: { errno: -5, text: 'i/o error' },
  ENOSPC: { errno: -28, text: 'no space left on device' },
};

/** An Error shaped like the ones `node:fs` rejects with (`code`, `errno`, `syscall`), not a `VdeError`. */
function nodeError(code: FaultErrorCode, syscall: string): Error {
  const { errno, text } = ERRNO[code];
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), { code, errno, syscall });
}

/**
 * A `BlockDevice` wrapper that injects I/O errors (`failAfter`) and simulates power loss (`powerCut`).
 *
 * It keeps a "durable image": the device as it was after the last successful `sync()`, plus the list of writes
 * (and growth) issued since. `sync()` folds into the image the writes that had resolved when it was called, as the
 * `BlockDevice` contract says. `powerCut` builds, from the durable image, what a crash would leave: each unsynced
 * write kept, dropped, or torn at 512-byte sectors, chosen by a `SeededRandom(seed)` so a failing seed reproduces.
 *
 * `powerCut` needs the starting contents of the inner device: it takes them from `inner.image()` when the inner
 * device has one (a `MemoryBlockDevice`), and otherwise throws `InvalidArgumentError`. Fault injection and the
 * counters work over any inner device.
 *
 * Thread safety: JavaScript is single-threaded; the bookkeeping of a call happens between its awaits, so calls
 * may overlap exactly as they may on the inner device.
 */
export class FaultyBlockDevice implements BlockDevice {
  readonly #inner: BlockDevice;
  /** The durable bytes (capacity may exceed the durable size); undefined if the inner device has no `image()`. */
  #durable: Uint8Array | undefined;
  #durableBlocks: number;
  #pending: PendingWrite[] = [];
  #fault: Fault | undefined;
  #dead = false;
  readonly #counters: FaultyBlockDeviceCounters = { reads: 0, writes: 0, syncs: 0, bytesWritten: 0 };

  constructor(inner: BlockDevice) {
    const d = inner as Partial<Record<keyof BlockDevice, unknown>> | null;
    if (d === null || typeof d !== 'object' || typeof d.read !== 'function' || typeof d.write !== 'function' || typeof d.sync !== 'function') {
      throw new InvalidArgumentError('FaultyBlockDevice needs a BlockDevice to wrap (e.g. a MemoryBlockDevice)');
    }
    this.#inner = inner;
    const withImage = inner as Partial<Pick<MemoryBlockDevice, 'image'>>;
    this.#durable = typeof withImage.image === 'function' ? withImage.image() : undefined;
    this.#durableBlocks = inner.blockCount;
  }

  get blockSize(): number {
    return this.#inner.blockSize;
  }

  get blockCount(): number {
    return this.#inner.blockCount;
  }

  get readOnly(): boolean {
    return this.#inner.readOnly;
  }

  /** A copy of the counters of successful calls. */
  get counters(): FaultyBlockDeviceCounters {
    return { ...this.#counters };
  }

  /** Writes issued since the last successful sync (a crash may lose or tear each of them). */
  get unsyncedWrites(): number {
    return this.#pending.length;
  }

  async read(blockNo: number, count: number): Promise<Uint8Array> {
    this.#alive();
    this.#maybeFail('read', 'read');
    const data = await this.#inner.read(blockNo, count);
    this.#alive();
    this.#counters.reads++;
    return data;
  }

  async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    this.#alive();
    this.#maybeFail('read', 'read');
    await this.#inner.readInto(blockNo, buffer);
    this.#alive();
    this.#counters.reads++;
  }

  async write(blockNo: number, data: Uint8Array): Promise<void> {
    this.#alive();
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.blockCount);
    const error = this.#takeFault('write', 'write');
    if (error) {
      await this.#writeFirstHalf(blockNo, data);
      throw error;
    }
    const entry: PendingWrite = { blockNo, data: data.slice(), done: false };
    this.#pending.push(entry);
    try {
      await this.#inner.write(blockNo, data);
    } catch (err) {
      this.#pending = this.#pending.filter((w) => w !== entry);
      throw err;
    }
    this.#alive(); // the power went out while it was in flight: it never completed (powerCut decided its fate)
    entry.done = true;
    this.#counters.writes++;
    this.#counters.bytesWritten += data.byteLength;
  }

  async sync(): Promise<void> {
    this.#alive();
    this.#maybeFail('sync', 'fsync');
    // Only writes that resolved before this call are covered (the BlockDevice contract), and the size reached by then.
    const covered = this.#pending.filter((w) => w.done);
    const sizeBlocks = this.#inner.blockCount;
    await this.#inner.sync();
    this.#alive(); // a sync in flight at the power cut never resolves successfully
    if (this.#durable) {
      this.#durable = this.#ensureCapacity(this.#durable, sizeBlocks * this.blockSize);
      for (const w of covered) this.#durable.set(w.data, w.blockNo * this.blockSize);
    }
    this.#durableBlocks = Math.max(this.#durableBlocks, sizeBlocks);
    const coveredSet = new Set(covered);
    this.#pending = this.#pending.filter((w) => !coveredSet.has(w));
    this.#counters.syncs++;
  }

  async grow(blockCount: number): Promise<void> {
    this.#alive();
    this.#maybeFail('write', 'ftruncate');
    await this.#inner.grow(blockCount);
    this.#alive();
  }

  async close(): Promise<void> {
    this.#alive();
    await this.#inner.close();
  }

  /**
   * Simulates a power cut now and returns a NEW `MemoryBlockDevice` holding what a crash would leave: every write
   * that completed before a `sync()` that resolved is kept; each later write (complete or in flight) is kept
   * (`keep-all`), dropped (`drop-all`), or, in `random` mode, kept, dropped or torn (each 512-byte sector old or new)
   * as a `SeededRandom(seed)` decides. Growth not yet synced is kept or lost the same way (random: either).
   * After this call every method of this device throws `ClosedError`, and calls still in flight reject with it.
   */
  powerCut(options: { seed: number; mode?: PowerCutMode }): MemoryBlockDevice {
    this.#alive();
    if (options === null || typeof options !== 'object' || typeof options.seed !== 'number' || !Number.isFinite(options.seed)) {
      throw new InvalidArgumentError('powerCut needs { seed: number, mode? } (the seed decides which unsynced writes survive)');
    }
    if (options.mode !== undefined && !POWER_CUT_MODES.includes(options.mode)) {
      throw new InvalidArgumentError(`powerCut mode must be one of ${POWER_CUT_MODES.join(', ')}, got ${String(options.mode)}`);
    }
    if (!this.#durable) {
      throw new InvalidArgumentError('powerCut needs an inner device with image() (a MemoryBlockDevice)');
    }
    this.#dead = true;
    const mode = options.mode ?? 'random';
    const rng = new SeededRandom(options.seed);
    const bs = this.blockSize;
    const grown = this.#inner.blockCount > this.#durableBlocks;
    const keepGrowth = grown && (mode === 'keep-all' || (mode === 'random' && rng.int(2) === 1));
    const sizeBlocks = keepGrowth ? this.#inner.blockCount : this.#durableBlocks;
    const image = new Uint8Array(sizeBlocks * bs);
    image.set(this.#durable.subarray(0, Math.min(this.#durable.byteLength, image.byteLength)));
    for (const w of this.#pending) {
      const outcome = mode === 'keep-all' ? 0 : mode === 'drop-all' ? 1 : rng.int(3);
      if (outcome === 1) continue;
      const start = w.blockNo * bs;
      for (let off = 0; off < w.data.byteLength; off += SECTOR_SIZE) {
        // A torn write: each sector independently old or new. Sectors past the surviving size are lost.
        if (outcome === 2 && rng.int(2) === 0) continue;
        if (start + off + SECTOR_SIZE > image.byteLength) break;
        image.set(w.data.subarray(off, off + SECTOR_SIZE), start + off);
      }
    }
    return MemoryBlockDevice.fromImage(image, bs);
  }

  /**
   * The `n`-th next I/O matching `options.op` (default `any`; 1 = the very next) rejects with a Node-style error
   * (`code` `EIO`/`ENOSPC`, `errno`, `syscall`). With `sticky`, every matching I/O after it fails too. A failed
   * write writes the first half of its sectors (rounded down) before it rejects. Replaces any earlier fault.
   */
  failAfter(n: number, error: FaultErrorCode, options: { op?: FaultOp; sticky?: boolean } = {}): void {
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`failAfter(n) needs n >= 1, got ${String(n)}`);
    if (error !== 'EIO' && error !== 'ENOSPC') throw new InvalidArgumentError(`unknown error code ${String(error)}`);
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('failAfter options must be an object');
    if (options.op !== undefined && !FAULT_OPS.includes(options.op)) {
      throw new InvalidArgumentError(`failAfter op must be one of ${FAULT_OPS.join(', ')}, got ${String(options.op)}`);
    }
    if (options.sticky !== undefined && typeof options.sticky !== 'boolean') {
      throw new InvalidArgumentError(`failAfter sticky must be a boolean, got ${String(options.sticky)}`);
    }
    this.#fault = { countdown: n, code: error, op: options.op ?? 'any', sticky: options.sticky ?? false, fired: false };
  }

  /** Removes the fault set by `failAfter`. */
  clearFaults(): void {
    this.#fault = undefined;
  }

  #alive(): void {
    if (this.#dead) throw new ClosedError('the faulty block device lost power; use the device powerCut returned');
  }

  #maybeFail(op: Exclude<FaultOp, 'any'>, syscall: string): void {
    const error = this.#takeFault(op, syscall);
    if (error) throw error;
  }

  /** Counts a matching I/O against the armed fault; returns the error to raise, if this I/O fails. */
  #takeFault(op: Exclude<FaultOp, 'any'>, syscall: string): Error | undefined {
    const f = this.#fault;
    if (!f || (f.op !== 'any' && f.op !== op)) return undefined;
    if (f.fired) return nodeError(f.code, syscall); // only sticky faults stay armed after firing
    if (--f.countdown > 0) return undefined;
    f.fired = true;
    if (!f.sticky) this.#fault = undefined;
    return nodeError(f.code, syscall);
  }

  /** A failed write may leave part of its sectors behind: write the first half of them (an unsynced write). */
  async #writeFirstHalf(blockNo: number, data: Uint8Array): Promise<void> {
    const sectors = Math.floor(data.byteLength / SECTOR_SIZE / 2);
    if (sectors === 0) return;
    const merged = await this.#inner.read(blockNo, data.byteLength / this.blockSize);
    merged.set(data.subarray(0, sectors * SECTOR_SIZE));
    this.#pending.push({ blockNo, data: merged, done: true });
    await this.#inner.write(blockNo, merged);
  }

  #ensureCapacity(buf: Uint8Array, bytes: number): Uint8Array {
    if (buf.byteLength >= bytes) return buf;
    const next = new Uint8Array(Math.max(bytes, buf.byteLength * 2));
    next.set(buf);
    return next;
  }
}
