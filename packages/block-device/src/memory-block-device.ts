import type { BlockDevice } from './block-device.js';
import { isValidBlockSize } from './block-device.js';
import { ClosedError, FullError, InvalidArgumentError, ReadOnlyError } from './errors.js';
import { checkBlockRange, checkBuffer, checkCount, checkOptions } from './range.js';

/** The most bytes one memory device holds (a typed array's limit is about 2^32 here, and memory runs out first). */
const MAX_MEMORY_BYTES = 2 ** 32;

export interface MemoryBlockDeviceOptions {
  blockSize?: number;
  blockCount?: number;
  readOnly?: boolean;
}

/**
 * A block device in memory, for tests and for embedding. Everything written is "durable" at once: `sync()`
 * only checks that the device is open. Every block is allocated (zeroed) when the device is created or grown,
 * up to 4 GiB in all; a larger size is `InvalidArgumentError` (constructor) or `FullError` (grow).
 */
export class MemoryBlockDevice implements BlockDevice {
  readonly blockSize: number;
  readonly readOnly: boolean;
  #blockCount: number;
  #bytes: Uint8Array;
  #closed = false;

  constructor(options: MemoryBlockDeviceOptions = {}) {
    checkOptions(options, 'memory block device options');
    const blockSize = options.blockSize ?? 4096;
    if (!isValidBlockSize(blockSize)) {
      throw new InvalidArgumentError(`blockSize must be a power of two from 512 to 65536, got ${String(blockSize)}`);
    }
    const blockCount = options.blockCount ?? 0;
    checkCount(blockCount);
    if (blockCount * blockSize > MAX_MEMORY_BYTES) {
      throw new InvalidArgumentError(`a memory device holds at most ${MAX_MEMORY_BYTES} bytes; ${blockCount} blocks of ${blockSize} do not fit`);
    }
    this.blockSize = blockSize;
    this.readOnly = options.readOnly ?? false;
    this.#blockCount = blockCount;
    this.#bytes = new Uint8Array(blockCount * blockSize);
  }

  /** A device holding a copy of `image` (whose length must be whole blocks). */
  static fromImage(image: Uint8Array, blockSize: number, options: { readOnly?: boolean } = {}): MemoryBlockDevice {
    checkBuffer(image, 'image');
    checkOptions(options, 'fromImage options');
    const dev = new MemoryBlockDevice({ blockSize, blockCount: 0, ...options });
    if (image.byteLength % blockSize !== 0) {
      throw new InvalidArgumentError(`image of ${image.byteLength} bytes is not whole ${blockSize}-byte blocks`);
    }
    dev.#bytes = new Uint8Array(image);
    dev.#blockCount = image.byteLength / blockSize;
    return dev;
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  /** A copy of the whole device. */
  image(): Uint8Array {
    return this.#bytes.slice(0, this.#blockCount * this.blockSize);
  }

  async read(blockNo: number, count: number): Promise<Uint8Array> {
    this.#open();
    checkCount(count);
    checkBlockRange(blockNo, count * this.blockSize, this.blockSize, this.#blockCount);
    const start = blockNo * this.blockSize;
    return this.#bytes.slice(start, start + count * this.blockSize);
  }

  async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    this.#open();
    checkBuffer(buffer, 'buffer');
    checkBlockRange(blockNo, buffer.byteLength, this.blockSize, this.#blockCount);
    const start = blockNo * this.blockSize;
    buffer.set(this.#bytes.subarray(start, start + buffer.byteLength));
  }

  async write(blockNo: number, data: Uint8Array): Promise<void> {
    this.#writable();
    checkBuffer(data, 'data');
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.#blockCount);
    this.#bytes.set(data, blockNo * this.blockSize);
  }

  async sync(): Promise<void> {
    this.#open();
  }

  /** `write` then `sync` (memory is "durable" at once). */
  async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
    await this.write(blockNo, data);
    await this.sync();
  }

  /** `writeDurable` on the calling thread: always possible in memory. */
  writeDurableSync(blockNo: number, data: Uint8Array): boolean {
    this.#writable();
    checkBuffer(data, 'data');
    checkBlockRange(blockNo, data.byteLength, this.blockSize, this.#blockCount);
    this.#bytes.set(data, blockNo * this.blockSize);
    return true;
  }

  async grow(blockCount: number): Promise<void> {
    this.#writable();
    checkCount(blockCount);
    if (blockCount <= this.#blockCount) return;
    const needed = blockCount * this.blockSize;
    if (needed > MAX_MEMORY_BYTES) {
      throw new FullError(`a memory device holds at most ${MAX_MEMORY_BYTES} bytes; cannot grow to ${blockCount} blocks of ${this.blockSize}`);
    }
    if (needed > this.#bytes.byteLength) {
      const next = new Uint8Array(Math.min(MAX_MEMORY_BYTES, Math.max(needed, Math.min(this.#bytes.byteLength * 2, needed + (64 << 20)))));
      next.set(this.#bytes.subarray(0, this.#blockCount * this.blockSize));
      this.#bytes = next;
    }
    this.#blockCount = blockCount;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new ClosedError('the memory block device is closed');
  }

  #writable(): void {
    this.#open();
    if (this.readOnly) throw new ReadOnlyError('the memory block device is read-only');
  }
}
