import { InvalidArgumentError, OutOfRangeError, isValidBlockSize } from '@vde/block-device';

/**
 * Where the tree keeps its pages. The engine implements it on top of device + allocator + WAL; tests use
 * `MemoryPageStore`.
 *
 * - `read` returns a buffer the tree may keep and modify (a copy, never the store's own bytes).
 * - `write` must not keep `page` after it resolves (the tree passes a buffer it no longer touches anyway).
 * - `allocate` returns a page number that no durable tree references.
 * - `free` is called only for pages allocated since the last flush that never became part of a flushed tree;
 *   the store may hand them out again at once. Pages of flushed trees are returned by `BTree.flush()` in
 *   `freedPages` instead, and the caller frees them when its checkpoint is durable.
 */
export interface PageStore {
  readonly pageSize: number;
  read(pageNo: number): Promise<Uint8Array>;
  write(pageNo: number, page: Uint8Array): Promise<void>;
  allocate(): number;
  free(pageNo: number): void;
}

/**
 * A `PageStore` in memory. Reading a page that was never written returns zeros (as a disk would), which the tree
 * reports as a corrupt page. Freed page numbers are reused, last freed first.
 */
export class MemoryPageStore implements PageStore {
  readonly pageSize: number;
  readonly #pages = new Map<number, Uint8Array>();
  readonly #allocated = new Set<number>();
  readonly #freeList: number[] = [];
  #next = 0;

  constructor(pageSize: number) {
    if (!isValidBlockSize(pageSize)) {
      throw new InvalidArgumentError(`pageSize must be a power of two from 512 to 65536, got ${String(pageSize)}`);
    }
    this.pageSize = pageSize;
  }

  /** Pages allocated and not freed. */
  get pagesInUse(): number {
    return this.#allocated.size;
  }

  async read(pageNo: number): Promise<Uint8Array> {
    this.#checkNo(pageNo);
    const page = this.#pages.get(pageNo);
    return page ? page.slice() : new Uint8Array(this.pageSize);
  }

  async write(pageNo: number, page: Uint8Array): Promise<void> {
    this.#checkNo(pageNo);
    if (page.byteLength !== this.pageSize) {
      throw new InvalidArgumentError(`page ${pageNo} is ${page.byteLength} bytes, the page size is ${this.pageSize}`);
    }
    if (!this.#allocated.has(pageNo)) throw new OutOfRangeError(`page ${pageNo} is not allocated`);
    this.#pages.set(pageNo, page.slice());
  }

  allocate(): number {
    const no = this.#freeList.length > 0 ? this.#freeList.pop()! : this.#next++;
    this.#allocated.add(no);
    return no;
  }

  free(pageNo: number): void {
    if (!this.#allocated.delete(pageNo)) throw new OutOfRangeError(`page ${pageNo} is not allocated`);
    this.#pages.delete(pageNo);
    this.#freeList.push(pageNo);
  }

  #checkNo(pageNo: number): void {
    if (!Number.isInteger(pageNo) || pageNo < 0 || pageNo > 0xfffffffe) {
      throw new OutOfRangeError(`page number ${String(pageNo)} is not valid`);
    }
  }
}
