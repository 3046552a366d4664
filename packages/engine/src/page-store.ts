import type { BitmapAllocator, Extent } from '@vde/allocator';
import { type BlockDevice, CorruptionError, FullError, MemoryBlockDevice, OutOfRangeError, ReadOnlyError } from '@vde/block-device';
import type { PageStore } from '@vde/btree';
import { ReadSlots } from './read-slots.js';

/** Largest coalesced page write, in bytes. */
const RUN_BYTES = 1 << 20;
/** Coalesced writes in flight at once (bounds the extra memory of a flush to this many runs). */
const RUNS_IN_FLIGHT = 8;
/**
 * The same for durable writes (a flush ahead of a checkpoint, while stores run): fewer, so that the log's writes
 * find a free thread in libuv's pool of four.
 */
const DURABLE_RUNS_IN_FLIGHT = 1;

/** The runs of one drain and the workers writing them. */
interface Drain {
  runs: PendingPage[][];
  next: number;
  workers: number;
  durable: boolean;
}

interface PendingPage {
  no: number;
  page: Uint8Array;
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * The index's pages live in the container's blocks: page number = block number.
 * `allocate` is synchronous; the engine keeps enough free blocks (headroom) that it does not fail mid-mutation.
 *
 * Page writes issued in one synchronous run (a checkpoint's flush issues all of its pages at once) are coalesced:
 * sorted by page number, each run of consecutive pages (up to 1 MiB) goes to the device as one write of a copy,
 * at most RUNS_IN_FLIGHT runs at a time. A checkpoint of 7,200 dirty pages made 7,200 thread-pool writes before
 * (about 210 ms before its fsync could start, measured); its pages lie in a handful of runs. A page's promise
 * settles with its run's write. Two writes of one page in the same run: the later bytes are written and both
 * promises settle with that write (the earlier bytes would have been overwritten anyway).
 *
 * While `durableWrites` is set (the engine's flush ahead of a checkpoint), runs go out with `device.writeDurable`
 * where the device has it: a `FileBlockDevice` then writes them through its `O_DSYNC` descriptor, so they leave
 * no completed-but-unsynced writes behind, and the log's batches keep their one-write durable path instead of
 * each waiting for an fsync that flushes megabytes of pages.
 */
export class DevicePageStore implements PageStore {
  readonly pageSize: number;
  #pending: PendingPage[] = [];
  readonly #drains = new Set<Drain>();
  #durableWrites = false;
  #hurried = false;
  /**
   * Blocks handed out for pages that no write has backed yet (see `back()`); tracked only for devices whose file
   * can be sparse (a grown container is a hole until written, and a write into a hole on a full disk is ENOSPC).
   */
  readonly #unbacked = new Set<number>();
  readonly #tracksBacking: boolean;
  /** Blocks `back()` wrote zeros to and reserved for the flush that follows, highest first (`allocate` pops). */
  #pool: number[] = [];
  /**
   * While `back()` writes zeros: the blocks it writes, and the pages freed meanwhile (returned to the allocator when
   * it is done). A flush ahead runs beside stores, whose merges free fresh pages at once: a block freed and given to
   * an object's data while its zeros were still to be written was overwritten with zeros (the object read corrupt).
   */
  #backing: Set<number> | undefined;
  #freedWhileBacking: number[] = [];

  /** Write the pages queued from now on durably (see the class comment). Setting it clears `hurry()`. */
  get durableWrites(): boolean {
    return this.#durableWrites;
  }
  set durableWrites(on: boolean) {
    this.#durableWrites = on;
    this.#hurried = false;
  }
  constructor(
    private readonly device: BlockDevice,
    private readonly allocator: () => BitmapAllocator,
    /** Device reads in flight, shared with the engine's object reads (see ReadSlots). */
    private readonly reads = new ReadSlots(),
  ) {
    this.pageSize = device.blockSize;
    this.#tracksBacking = !(device instanceof MemoryBlockDevice);
  }

  /**
   * Makes sure the next flush cannot fail for lack of disk space (ENOSPC): a flush relocates pages to new blocks
   * and writes them, and a failed flush poisons the engine (its tree is no longer a clean cut), so on a full file
   * system a checkpoint used to poison the engine where `ERR_VDE_FULL` should do. This writes zeros, as plain
   * writes, to every block handed out for a page since it was last written (pages created by splits, written in
   * place by the flush), to `pages` more blocks that the flush's copy-on-write then takes first (`allocate`), and
   * to `extra` (the checkpoint's meta blob run). Once a write into a block succeeded, the file system has the space
   * for it, and a later write of the same block does not ask for more. A failure (ERR_VDE_FULL on a full disk)
   * returns the pool's blocks to the allocator and changes nothing else: the caller fails cleanly. The flush
   * returns what it did not use with `releasePool()`. No-op for a memory device.
   */
  async back(pages: number, extra: readonly Extent[] = []): Promise<void> {
    if (!this.#tracksBacking) return;
    this.releasePool();
    const allocator = this.allocator();
    const pool = pages > 0 ? allocator.allocate(Math.min(pages, allocator.freeCount)) : [];
    const blocks: number[] = [...this.#unbacked];
    for (const e of [...pool, ...extra]) for (let b = e.start; b < e.start + e.count; b++) blocks.push(b);
    blocks.sort((a, b) => a - b);
    this.#backing = new Set(blocks);
    const maxPages = Math.max(1, Math.floor(RUN_BYTES / this.pageSize));
    const zeros = new Uint8Array(Math.min(blocks.length, maxPages) * this.pageSize);
    try {
      for (let i = 0; i < blocks.length; ) {
        let j = i + 1;
        while (j < blocks.length && j - i < maxPages && blocks[j] === blocks[j - 1]! + 1) j++;
        await this.device.write(blocks[i]!, zeros.subarray(0, (j - i) * this.pageSize));
        i = j;
      }
    } catch (err) {
      if (pool.length > 0) allocator.free(pool);
      throw err;
    } finally {
      this.#backing = undefined;
      const freed = this.#freedWhileBacking;
      this.#freedWhileBacking = [];
      if (freed.length > 0) this.allocator().free(freed.map((b) => ({ start: b, count: 1 })));
    }
    // Blocks written or freed meanwhile left the set already; the rest are backed now.
    for (const b of blocks) this.#unbacked.delete(b);
    const mine: number[] = [];
    for (const e of pool) for (let b = e.start; b < e.start + e.count; b++) mine.push(b);
    this.#pool = mine.sort((a, b) => b - a);
  }

  /** Blocks handed out for pages and not written since (what `back()` writes zeros to besides its pool). */
  get unbackedCount(): number {
    return this.#unbacked.size;
  }

  /** Returns the blocks of the last `back()` that the flush did not take to the allocator. */
  releasePool(): void {
    if (this.#pool.length === 0) return;
    const pool = this.#pool;
    this.#pool = [];
    this.allocator().free(pool.map((b) => ({ start: b, count: 1 })));
  }

  async read(pageNo: number): Promise<Uint8Array> {
    try {
      return await this.reads.run(() => this.device.read(pageNo, 1));
    } catch (err) {
      if (err instanceof OutOfRangeError) throw new CorruptionError(`btree page ${pageNo}`, 'page number is outside the container');
      throw err;
    }
  }

  write(pageNo: number, page: Uint8Array): Promise<void> {
    this.#unbacked.delete(pageNo); // written now (or the write fails, and the flush with it)
    return new Promise<void>((resolve, reject) => {
      if (this.#pending.length === 0) queueMicrotask(() => this.#drain());
      this.#pending.push({ no: pageNo, page, durable: this.durableWrites, resolve, reject });
    });
  }

  /** Writes what was queued in the last synchronous run, as runs of consecutive pages. */
  #drain(): void {
    const pending = this.#pending;
    this.#pending = [];
    pending.sort((a, b) => a.no - b.no); // stable: of two writes of one page, the later stays later
    const maxPages = Math.max(1, Math.floor(RUN_BYTES / this.pageSize));
    const runs: PendingPage[][] = [];
    let run: PendingPage[] = [];
    for (const p of pending) {
      const last = run[run.length - 1];
      if (last !== undefined && p.no === last.no) {
        // The same page again: its later bytes replace the earlier ones in the run; both settle with the write.
        run.push(p);
        continue;
      }
      if (last !== undefined && (p.no !== last.no + 1 || p.durable !== last.durable || distinctPages(run) >= maxPages)) {
        runs.push(run);
        run = [];
      }
      run.push(p);
    }
    if (run.length > 0) runs.push(run);
    const drain: Drain = { runs, next: 0, workers: 0, durable: pending.some((p) => p.durable) };
    this.#drains.add(drain);
    const workers = drain.durable && !this.#hurried ? DURABLE_RUNS_IN_FLIGHT : RUNS_IN_FLIGHT;
    this.#addWorkers(drain, workers);
  }

  /**
   * Runs of durable writes still queued go out as plain writes, as many at a time as non-durable ones: someone
   * waits for this flush now (a checkpoint, or stores out of log space), and the checkpoint's fsync covers them.
   * Until `durableWrites` is set again.
   */
  hurry(): void {
    this.#hurried = true;
    for (const d of this.#drains) this.#addWorkers(d, RUNS_IN_FLIGHT);
  }

  #addWorkers(drain: Drain, upTo: number): void {
    while (drain.workers < Math.min(upTo, drain.runs.length - drain.next)) {
      drain.workers++;
      void this.#worker(drain);
    }
  }

  /**
   * Writes runs of `drain` until none is left. Each worker copies its runs into one buffer of its own, reused once
   * the write before has resolved: fresh memory for every run cost more in page faults than the copy itself.
   */
  async #worker(drain: Drain): Promise<void> {
    const maxPages = Math.max(1, Math.floor(RUN_BYTES / this.pageSize));
    let buf: Uint8Array | undefined;
    while (drain.next < drain.runs.length) {
      const r = drain.runs[drain.next++]!;
      try {
        if (r.length > 1) buf ??= new Uint8Array(maxPages * this.pageSize);
        await this.#writeRun(r, buf, r[0]!.durable && !this.#hurried);
        for (const p of r) p.resolve();
      } catch (err) {
        for (const p of r) p.reject(err);
      }
    }
    if (--drain.workers === 0) this.#drains.delete(drain);
  }

  /**
   * One device write for a run of consecutive pages (entries sorted by page number; repeats: the last wins),
   * copied into `buf` when there is more than one entry.
   */
  #writeRun(run: readonly PendingPage[], buf: Uint8Array | undefined, durable: boolean): Promise<void> {
    const first = run[0]!.no;
    const dev = this.device;
    const write = (bytes: Uint8Array): Promise<void> => (durable && dev.writeDurable ? dev.writeDurable(first, bytes) : dev.write(first, bytes));
    if (run.length === 1 || buf === undefined) return write(run[0]!.page);
    const ps = this.pageSize;
    for (const p of run) buf.set(p.page.subarray(0, ps), (p.no - first) * ps);
    return write(buf.subarray(0, distinctPages(run) * ps));
  }

  allocate(): number {
    const backed = this.#pool.pop();
    if (backed !== undefined) return backed;
    const [extent] = this.allocator().allocate(1);
    if (!extent) throw new Error('allocator returned no extent');
    if (this.#tracksBacking) this.#unbacked.add(extent.start);
    return extent.start;
  }

  free(pageNo: number): void {
    this.#unbacked.delete(pageNo);
    if (this.#backing?.has(pageNo)) {
      this.#freedWhileBacking.push(pageNo); // its zeros may still be on their way (see #backing)
      return;
    }
    this.allocator().free([{ start: pageNo, count: 1 }]);
  }
}

function distinctPages(run: readonly PendingPage[]): number {
  return run[run.length - 1]!.no - run[0]!.no + 1;
}

/** The largest page number a B-tree accepts (see @vde/btree: page numbers are u32, 0xffffffff is "none"). */
const MAX_PAGE_NO = 0xfffffffe;

/**
 * A page store for read-only opens: replayed log records change the index in memory only. New pages get numbers
 * counted down from the largest page number the tree accepts, past any real block (a read-only device never
 * grows); they are never written (dirty pages are not evicted and a read-only engine never flushes).
 */
export class ReadOnlyPageStore implements PageStore {
  readonly pageSize: number;
  #next = MAX_PAGE_NO;
  constructor(
    private readonly inner: DevicePageStore,
    private readonly blockCount: number,
  ) {
    this.pageSize = inner.pageSize;
  }
  read(pageNo: number): Promise<Uint8Array> {
    return this.inner.read(pageNo);
  }
  write(): Promise<void> {
    return Promise.reject(new ReadOnlyError('the container is open read-only'));
  }
  allocate(): number {
    if (this.#next < this.blockCount) {
      throw new FullError('a read-only open ran out of page numbers for the index changes it replays in memory');
    }
    return this.#next--;
  }
  free(): void {}
}
