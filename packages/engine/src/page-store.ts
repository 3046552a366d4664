import type { BitmapAllocator } from '@vde/allocator';
import { type BlockDevice, CorruptionError, OutOfRangeError, ReadOnlyError } from '@vde/block-device';
import type { PageStore } from '@vde/btree';

/**
 * The index's pages live in the container's blocks: page number = block number.
 * `allocate` is synchronous; the engine keeps enough free blocks (headroom) that it does not fail mid-mutation.
 */
export class DevicePageStore implements PageStore {
  readonly pageSize: number;
  constructor(
    private readonly device: BlockDevice,
    private readonly allocator: () => BitmapAllocator,
  ) {
    this.pageSize = device.blockSize;
  }

  async read(pageNo: number): Promise<Uint8Array> {
    try {
      return await this.device.read(pageNo, 1);
    } catch (err) {
      if (err instanceof OutOfRangeError) throw new CorruptionError(`btree page ${pageNo}`, 'page number is outside the container');
      throw err;
    }
  }

  write(pageNo: number, page: Uint8Array): Promise<void> {
    return this.device.write(pageNo, page);
  }

  allocate(): number {
    const [extent] = this.allocator().allocate(1);
    if (!extent) throw new Error('allocator returned no extent');
    return extent.start;
  }

  free(pageNo: number): void {
    this.allocator().free([{ start: pageNo, count: 1 }]);
  }
}

/**
 * A page store for read-only opens: replayed log records change the index in memory only. New pages get numbers
 * past any real block; they are never written (dirty pages are not evicted and a read-only engine never flushes).
 */
export class ReadOnlyPageStore implements PageStore {
  readonly pageSize: number;
  #next = 2 ** 40;
  constructor(private readonly inner: DevicePageStore) {
    this.pageSize = inner.pageSize;
  }
  read(pageNo: number): Promise<Uint8Array> {
    return this.inner.read(pageNo);
  }
  write(): Promise<void> {
    return Promise.reject(new ReadOnlyError('the container is open read-only'));
  }
  allocate(): number {
    return this.#next++;
  }
  free(): void {}
}
