import { type BlockDevice, type MemoryBlockDevice, toIoError } from '@vde/block-device';
import type { FaultyBlockDevice } from './faulty-block-device.js';

/**
 * Cuts the power of a `FaultyBlockDevice` (its `powerCut`) when the `cutAt`-th write or sync is issued, before that
 * call reaches the device; the call then fails with `ClosedError`, as does everything after it. `image` holds what
 * the crash left. `close()` does not close the simulated disk, so a store can be closed and its disk kept.
 */
export class CuttingDevice implements BlockDevice {
  ops = 0;
  image: MemoryBlockDevice | undefined;

  constructor(
    readonly inner: FaultyBlockDevice,
    public cutAt: number,
    readonly seed: number,
  ) {}

  /** Cuts the power at the `n`-th write or sync issued from now on (`n` >= 1), unless it is cut already. */
  cutAfter(n: number): void {
    if (!this.image) this.cutAt = this.ops + n;
  }

  get blockSize(): number {
    return this.inner.blockSize;
  }

  get blockCount(): number {
    return this.inner.blockCount;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  #tick(): void {
    if (!this.image && ++this.ops >= this.cutAt) this.image = this.inner.powerCut({ seed: this.seed });
  }

  read(blockNo: number, count: number): Promise<Uint8Array> {
    return this.inner.read(blockNo, count);
  }

  readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    return this.inner.readInto(blockNo, buffer);
  }

  write(blockNo: number, data: Uint8Array): Promise<void> {
    this.#tick();
    return this.inner.write(blockNo, data);
  }

  sync(): Promise<void> {
    this.#tick();
    return this.inner.sync();
  }

  grow(blockCount: number): Promise<void> {
    return this.inner.grow(blockCount);
  }

  async close(): Promise<void> {}
}

/**
 * Gives a device the `BlockDevice` contract's error types: a Node-style error (`code` EIO, ENOSPC, …), as
 * `FaultyBlockDevice` raises like `node:fs` does, becomes an `IoError`/`FullError` via `toIoError` — what
 * `FileBlockDevice` does for real OS errors. `close()` leaves the inner device open, so it can be reopened.
 */
export class TypedErrorDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice) {}

  get blockSize(): number {
    return this.inner.blockSize;
  }

  get blockCount(): number {
    return this.inner.blockCount;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  async read(blockNo: number, count: number): Promise<Uint8Array> {
    try {
      return await this.inner.read(blockNo, count);
    } catch (err) {
      throw toIoError(err, `reading block ${blockNo}`);
    }
  }

  async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    try {
      await this.inner.readInto(blockNo, buffer);
    } catch (err) {
      throw toIoError(err, `reading block ${blockNo}`);
    }
  }

  async write(blockNo: number, data: Uint8Array): Promise<void> {
    try {
      await this.inner.write(blockNo, data);
    } catch (err) {
      throw toIoError(err, `writing block ${blockNo}`);
    }
  }

  async sync(): Promise<void> {
    try {
      await this.inner.sync();
    } catch (err) {
      throw toIoError(err, 'fsync');
    }
  }

  async grow(blockCount: number): Promise<void> {
    try {
      await this.inner.grow(blockCount);
    } catch (err) {
      throw toIoError(err, `growing to ${blockCount} blocks`);
    }
  }

  async close(): Promise<void> {}
}

/** Rejects with `onTimeout()` if `promise` has not settled after `ms` milliseconds. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A `CuttingDevice` that also offers `writeDurable`, as a write then a sync of the `FaultyBlockDevice`, each of which
 * counts as an operation and can be cut: cut at the first, the write never happened; at the second, it was issued
 * but not synced, so the power cut keeps, drops or tears it, as with an interrupted `O_DSYNC` write. Its presence
 * lets the write-ahead log put two durable batches in flight at once, as it does on a `FileBlockDevice`.
 */
export class DurableCuttingDevice extends CuttingDevice {
  async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
    await this.write(blockNo, data);
    await this.sync();
  }
}
