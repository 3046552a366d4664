import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BitmapAllocator } from '@vde/allocator';
import { IoError, MemoryBlockDevice } from '@vde/block-device';
import { DevicePageStore } from '../src/page-store.js';

const PS = 512;

/** A memory device that records every write (first block, block count) and can fail writes that cover a block. */
class RecordingDevice extends MemoryBlockDevice {
  readonly writes: [number, number][] = [];
  readonly durable: number[] = [];
  failBlock = -1;
  delayMs = 0;
  inFlight = 0;
  peak = 0;
  override async write(blockNo: number, data: Uint8Array): Promise<void> {
    const blocks = data.byteLength / this.blockSize;
    this.writes.push([blockNo, blocks]);
    this.peak = Math.max(this.peak, ++this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failBlock >= blockNo && this.failBlock < blockNo + blocks) throw new IoError('injected write failure');
      await super.write(blockNo, data);
    } finally {
      this.inFlight--;
    }
  }
  override async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
    this.durable.push(blockNo);
    await this.write(blockNo, data);
    await this.sync();
  }
}

async function setup(blocks = 4096): Promise<{ dev: RecordingDevice; store: DevicePageStore }> {
  const dev = new RecordingDevice({ blockSize: PS });
  await dev.grow(blocks);
  const allocator = new BitmapAllocator(blocks);
  return { dev, store: new DevicePageStore(dev, () => allocator) };
}

const page = (fill: number): Uint8Array => new Uint8Array(PS).fill(fill);

describe('DevicePageStore: page writes of one synchronous run are coalesced', () => {
  it('writes each run of consecutive pages as one device write; a repeated page keeps its later bytes', async () => {
    const { dev, store } = await setup();
    await Promise.all([
      store.write(5, page(5)),
      store.write(3, page(3)),
      store.write(4, page(40)),
      store.write(9, page(9)),
      store.write(4, page(44)), // the same page again, later: these bytes win
    ]);
    expect(dev.writes.sort((a, b) => a[0] - b[0])).toEqual([
      [3, 3],
      [9, 1],
    ]);
    for (const [no, fill] of [
      [3, 3],
      [4, 44],
      [5, 5],
      [9, 9],
    ]) {
      expect(await dev.read(no!, 1)).toEqual(page(fill!));
    }
  });

  it('caps a run at 1 MiB and leaves writes of later turns to their own drain', async () => {
    const { dev, store } = await setup();
    const max = (1 << 20) / PS; // 2,048 pages of 512 bytes
    const first = Array.from({ length: max + 10 }, (_, i) => store.write(i, page(i & 0xff)));
    await Promise.all(first);
    expect(dev.writes.map((w) => w[1]).sort((a, b) => b - a)).toEqual([max, 10]);
    dev.writes.length = 0;
    await store.write(max + 10, page(1));
    await store.write(max + 11, page(2));
    expect(dev.writes).toEqual([
      [max + 10, 1],
      [max + 11, 1],
    ]);
    expect(await dev.read(max + 5, 1)).toEqual(page((max + 5) & 0xff));
  });

  it('a failed run rejects the writes of its pages, and only those', async () => {
    const { dev, store } = await setup();
    dev.failBlock = 11;
    const results = await Promise.allSettled([store.write(10, page(1)), store.write(11, page(2)), store.write(20, page(3))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(IoError);
    expect(await dev.read(20, 1)).toEqual(page(3));
  });

  it('durable writes go one run at a time until hurry(), then the rest as plain writes at full pace', async () => {
    const { dev, store } = await setup(24_000);
    dev.delayMs = 3;
    const max = (1 << 20) / PS;
    store.durableWrites = true;
    // Ten runs of 1 MiB (gaps between them keep them apart).
    const writes = Array.from({ length: 10 }, (_, r) => Array.from({ length: max }, (_, i) => store.write(r * (max + 1) + i, page(r + 1)))).flat();
    store.durableWrites = false;
    while (dev.durable.length < 2) await new Promise((r) => setTimeout(r, 1)); // runs go out one at a time, durably
    expect(dev.peak).toBe(1);
    const durableBefore = dev.durable.length;
    expect(durableBefore).toBeGreaterThan(0);
    expect(durableBefore).toBeLessThan(10);
    store.hurry();
    await Promise.all(writes);
    expect(dev.peak).toBeGreaterThan(1);
    expect(dev.durable.length).toBeLessThanOrEqual(durableBefore + 1); // at most the one in flight at hurry()
    expect(dev.writes.length).toBe(10);
    for (let r = 0; r < 10; r++) expect(await dev.read(r * (max + 1) + 7, 1)).toEqual(page(r + 1));
  });

  it('leaves every page with the bytes of its last write, for any set of writes in one turn (model)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 200 }), async (ops) => {
        const { dev, store } = await setup(512);
        const model = new Map<number, number>();
        await Promise.all(ops.map(([no, fill]) => store.write(no, page(fill))));
        for (const [no, fill] of ops) model.set(no, fill);
        for (const [no, fill] of model) expect(await dev.read(no, 1)).toEqual(page(fill));
        // Never more device writes than distinct pages, and no write covers a page nobody wrote.
        expect(dev.writes.length).toBeLessThanOrEqual(model.size);
        for (const [start, count] of dev.writes) for (let b = start; b < start + count; b++) expect(model.has(b)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

/** A device over memory that is not a MemoryBlockDevice (so the page store tracks backing), with held writes. */
class HeldDevice {
  readonly inner = new MemoryBlockDevice({ blockSize: PS });
  readonly blockSize = PS;
  readonly readOnly = false;
  holdBlock = -1;
  #release: (() => void) | undefined;
  held: Promise<void> | undefined;
  get blockCount(): number {
    return this.inner.blockCount;
  }
  read(blockNo: number, count: number): Promise<Uint8Array> {
    return this.inner.read(blockNo, count);
  }
  readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    return this.inner.readInto(blockNo, buffer);
  }
  async write(blockNo: number, data: Uint8Array): Promise<void> {
    if (this.holdBlock >= blockNo && this.holdBlock < blockNo + data.byteLength / PS) {
      this.holdBlock = -1;
      let started!: () => void;
      this.held = new Promise<void>((r) => (started = r));
      await new Promise<void>((r) => {
        this.#release = r;
        started();
      });
    }
    await this.inner.write(blockNo, data);
  }
  release(): void {
    this.#release?.();
  }
  sync(): Promise<void> {
    return this.inner.sync();
  }
  grow(blockCount: number): Promise<void> {
    return this.inner.grow(blockCount);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('DevicePageStore.back(): zeros for pages not written yet', () => {
  it('a page freed while back() writes zeros is not given out until back() is done (its zeros came after the new data)', async () => {
    const dev = new HeldDevice();
    await dev.grow(8);
    const allocator = new BitmapAllocator(8);
    const store = new DevicePageStore(dev, () => allocator);
    const a = store.allocate();
    const x = store.allocate();
    const c = store.allocate();
    await store.write(x, page(1)); // backed: a and c are not, and lie in two runs
    const others = allocator.allocate(allocator.freeCount); // the rest of the container is in use
    expect(others.reduce((n, e) => n + e.count, 0)).toBe(5);
    dev.holdBlock = a;
    const backing = store.back(0);
    await dev.held; // back() writes a's zeros; c's come next
    // A merge in a store beside a flush ahead drops the fresh page c: the block goes back to the allocator, which
    // hands it to an object's data, written at once.
    store.free(c);
    const given = allocator.freeCount > 0 ? allocator.allocate(1) : [];
    for (const e of given) await dev.write(e.start, page(0xab));
    dev.release();
    await backing;
    // Every block the allocator gave out holds the object's bytes (no zeros over them), and c is free once back()
    // is done (here the only free block, so it could not be given out before).
    for (const e of given) expect(await dev.read(e.start, 1)).toEqual(page(0xab));
    expect(allocator.isAllocated(c)).toBe(false);
    expect(allocator.freeCount).toBe(1 - given.length);
  });
});
