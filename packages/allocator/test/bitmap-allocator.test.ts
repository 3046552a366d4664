import { crc32 } from '@vde/block-device';
import { describe, expect, it } from 'vitest';
import { BitmapAllocator, MAX_RESERVED_RANGES } from '../src/index.js';
import { countOnes, findOne, findOneBackward, findZero, popcount, setRange, clearRange } from '../src/bits.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? 'untyped';
  }
  return undefined;
}

/** Rewrites the trailing CRC so that a deliberately edited image passes the checksum. */
function resealed(image: Uint8Array, blockCount: number): Uint8Array {
  const len = BitmapAllocator.serializedByteLength(blockCount);
  new DataView(image.buffer, image.byteOffset).setUint32(len - 4, crc32(image.subarray(0, len - 4)), true);
  return image;
}

describe('bit helpers', () => {
  it('find, set, clear and count across word boundaries', () => {
    const w = new Uint32Array(4);
    setRange(w, 5, 70);
    expect(countOnes(w, 0, 128)).toBe(70);
    expect(findOne(w, 0, 128)).toBe(5);
    expect(findZero(w, 5, 128)).toBe(75);
    expect(findZero(w, 0, 128)).toBe(0);
    expect(findOneBackward(w, 128)).toBe(74);
    expect(findOneBackward(w, 5)).toBe(-1);
    expect(findOneBackward(w, 6)).toBe(5);
    expect(findOneBackward(w, 128, 80)).toBe(79);
    expect(findOneBackward(w, 80, 70)).toBe(74);
    expect(findOneBackward(w, 5, 2)).toBe(1);
    clearRange(w, 31, 2);
    expect(findZero(w, 5, 128)).toBe(31);
    expect(findOne(w, 31, 128)).toBe(33);
    expect(countOnes(w, 0, 128)).toBe(68);
    expect(findZero(w, 40, 60)).toBe(60);
    expect(popcount(0xffffffff)).toBe(32);
    expect(popcount(0x80000001)).toBe(2);
  });
});

describe('BitmapAllocator', () => {
  it('starts all free and allocates one contiguous extent when a run fits', () => {
    const a = new BitmapAllocator(100);
    expect([a.blockCount, a.freeCount, a.largestFreeRun, a.stagedCount]).toEqual([100, 100, 100, 0]);
    expect(a.allocate(10)).toEqual([{ start: 0, count: 10 }]);
    expect(a.allocate(5)).toEqual([{ start: 10, count: 5 }]);
    expect(a.freeCount).toBe(85);
    expect(a.isAllocated(14)).toBe(true);
    expect(a.isAllocated(15)).toBe(false);
    a.check();
  });

  it('picks the best-fitting run, not the first', () => {
    const a = new BitmapAllocator(64);
    a.markAllocated([{ start: 0, count: 64 }]);
    a.free([{ start: 2, count: 10 }, { start: 20, count: 3 }, { start: 30, count: 5 }]);
    expect(a.allocate(3)).toEqual([{ start: 20, count: 3 }]);
    expect(a.allocate(4)).toEqual([{ start: 30, count: 4 }]);
    a.check();
  });

  it('falls back to several extents, largest first, and contiguous: true refuses', () => {
    const a = new BitmapAllocator(40);
    a.markAllocated([{ start: 0, count: 40 }]);
    a.free([{ start: 1, count: 3 }, { start: 10, count: 6 }, { start: 20, count: 2 }, { start: 30, count: 5 }]);
    expect(a.largestFreeRun).toBe(6);
    expect(code(() => a.allocate(9, { contiguous: true }))).toBe('ERR_VDE_FULL');
    expect(a.freeCount).toBe(16);
    expect(a.allocate(9)).toEqual([{ start: 10, count: 6 }, { start: 30, count: 3 }]);
    expect(a.freeCount).toBe(7);
    a.check();
  });

  it('never hands out a block twice when the cursor sits inside a free run (regression)', () => {
    // Found by the model test: the free run [4, 11) straddles the cursor (5); the multi-extent search used to
    // see its tail [5, 11) and the whole run, and returned block 5 twice.
    const a = new BitmapAllocator(32);
    a.allocate(5);
    a.free([{ start: 4, count: 1 }]);
    a.reserve({ start: 11, count: 16 });
    expect(a.allocate(8)).toEqual([{ start: 4, count: 7 }, { start: 27, count: 1 }]);
    expect(a.freeCount).toBe(4);
    a.check();
  });

  it('multi-extent allocation on a large fragmented map (bounded search window) stays consistent', () => {
    const n = 300_000;
    const a = new BitmapAllocator(n);
    const used = new Uint8Array(n);
    // Free runs of 1..7 blocks separated by single used blocks.
    let seed = 7;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (let b = 0; b < n; ) {
      const run = 1 + Math.floor(rand() * 7);
      b += run;
      if (b < n) {
        a.markAllocated([{ start: b, count: 1 }]);
        used[b] = 1;
        b++;
      }
    }
    const live: ReturnType<BitmapAllocator['allocate']>[] = [];
    for (let i = 0; i < 200; i++) {
      const got = a.allocate(1 + Math.floor(rand() * 300));
      for (let k = 1; k < got.length; k++) expect(got[k]!.count).toBeLessThanOrEqual(got[k - 1]!.count);
      for (const e of got) {
        for (let b = e.start; b < e.start + e.count; b++) {
          if (used[b]) throw new Error(`block ${b} handed out twice`);
          used[b] = 1;
        }
      }
      live.push(got);
      if (live.length > 50) {
        const old = live.shift()!;
        a.free(old);
        for (const e of old) used.fill(0, e.start, e.start + e.count);
      }
    }
    a.check();
    expect(a.freeCount).toBe(n - used.reduce((x, y) => x + y, 0));
  });

  it('skips chunks of holes too small for the request but finds runs that cross chunk boundaries', () => {
    // The search summary works in chunks of 2048 blocks; every even block free leaves 1-block holes in all ten.
    const n = 20_480;
    const a = new BitmapAllocator(n);
    a.markAllocated([{ start: 0, count: n }]);
    const holes = [];
    for (let b = 0; b < n; b += 2) holes.push({ start: b, count: 1 });
    a.free(holes);
    a.free([{ start: 10_239, count: 1 }]); // run [10238, 10241): 2 blocks in chunk 4, 1 in chunk 5
    const odd = [];
    for (let b = 14_001; b < 18_000; b += 2) odd.push({ start: b, count: 1 });
    a.free(odd); // run [14000, 18001): longer than a chunk
    a.check();
    expect(a.allocate(3)).toEqual([{ start: 10_238, count: 3 }]);
    expect(a.allocate(4001, { contiguous: true })).toEqual([{ start: 14_000, count: 4001 }]);
    expect(code(() => a.allocate(2, { contiguous: true }))).toBe('ERR_VDE_FULL');
    expect(a.largestFreeRun).toBe(1);
    a.check();
    const b = BitmapAllocator.load(a.serialize()); // a loaded map's summary starts stale
    b.free([{ start: 101, count: 1 }]);
    expect(b.allocate(3)).toEqual([{ start: 100, count: 3 }]);
    b.check();
  });

  it('allocate(2) past many 1-block holes takes the large run, and a new exact fit when one appears', () => {
    const holes = 5000;
    const a = new BitmapAllocator(2 * holes + 3000);
    a.allocate(2 * holes, { contiguous: true });
    const free = [];
    for (let b = 0; b < 2 * holes; b += 2) free.push({ start: b, count: 1 });
    a.free(free);
    for (let i = 0; i < 100; i++) expect(a.allocate(2)).toEqual([{ start: 2 * holes + 2 * i, count: 2 }]);
    a.check();
    a.free([{ start: 5001, count: 1 }]); // run [5000, 5003): a better fit than the large run
    expect(a.allocate(2)).toEqual([{ start: 5000, count: 2 }]);
    a.free([{ start: 7001, count: 1 }]); // run [7000, 7003)
    expect(a.allocate(3)).toEqual([{ start: 7000, count: 3 }]);
    a.check();
  });

  it('keeps largestFreeRun right when a free joins a run longer than the merge scan', () => {
    const a = new BitmapAllocator(100_000);
    const [x] = a.allocate(10);
    const [y] = a.allocate(1);
    a.allocate(50_000);
    a.free([x!]);
    a.free([{ start: 11, count: 50_000 }]); // joins the free tail: run [11, 100000)
    a.check();
    expect(a.largestFreeRun).toBe(100_000 - 11);
    a.free([y!]); // now [0, 100000) is one run; its ends are far away
    a.check();
    expect(a.largestFreeRun).toBe(100_000);
    expect(a.allocate(100_000, { contiguous: true })).toEqual([{ start: 0, count: 100_000 }]);
  });

  it('serialize(null) is ERR_VDE_INVALID_ARGUMENT, not a TypeError', () => {
    const a = new BitmapAllocator(10);
    expect(code(() => a.serialize(null as never))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.serialize(5 as never))).toBe('ERR_VDE_INVALID_ARGUMENT');
  });

  it('FullError allocates nothing', () => {
    const a = new BitmapAllocator(10);
    a.allocate(8);
    const image = a.serialize();
    expect(code(() => a.allocate(3))).toBe('ERR_VDE_FULL');
    expect(a.serialize()).toEqual(image);
    expect(a.allocate(2)).toEqual([{ start: 8, count: 2 }]);
    expect(code(() => a.allocate(1))).toBe('ERR_VDE_FULL');
    expect(code(() => new BitmapAllocator(0).allocate(1))).toBe('ERR_VDE_FULL');
  });

  it('serialize({ asFree }) records those allocated extents as free in the image only', () => {
    const a = new BitmapAllocator(100);
    const [x] = a.allocate(10);
    const [y] = a.allocate(5);
    const live = a.serialize();
    const image = a.serialize({ asFree: [y!] });
    // The allocator itself is unchanged.
    expect(a.serialize()).toEqual(live);
    expect(a.freeCount).toBe(85);
    // The image loads as the allocator would be had y been freed.
    const loaded = BitmapAllocator.load(image);
    loaded.check();
    expect(loaded.freeCount).toBe(90);
    const copy = BitmapAllocator.load(live);
    copy.free([y!]);
    expect(copy.serialize()).toEqual(image);
    // Only allocated, non-overlapping extents; nothing is returned otherwise.
    expect(code(() => a.serialize({ asFree: [{ start: 50, count: 1 }] }))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.serialize({ asFree: [x!, { start: 2, count: 1 }] }))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.serialize({ asFree: [{ start: 99, count: 2 }] }))).toBe('ERR_VDE_RANGE');
    a.reserve({ start: 90, count: 5 });
    expect(code(() => a.serialize({ asFree: [{ start: 90, count: 1 }] }))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(a.serialize({ asFree: [] })).toEqual(a.serialize());
  });

  it('free validates every extent before changing anything', () => {
    const a = new BitmapAllocator(32);
    a.allocate(10);
    const before = a.serialize();
    expect(code(() => a.free([{ start: 0, count: 2 }, { start: 12, count: 1 }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.free([{ start: 0, count: 4 }, { start: 3, count: 2 }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.free([{ start: 0, count: 2 }, { start: 31, count: 2 }]))).toBe('ERR_VDE_RANGE');
    expect(code(() => a.free([{ start: 0, count: 1.5 }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(a.serialize()).toEqual(before);
    a.free([{ start: 0, count: 2 }, { start: 5, count: 5 }]);
    expect(a.freeCount).toBe(29);
    a.free([]);
    a.check();
  });

  it('reserved regions are never handed out, freed or staged, and reserving twice is harmless', () => {
    const a = new BitmapAllocator(20);
    a.reserve({ start: 0, count: 2 });
    a.reserve({ start: 1, count: 3 });
    a.reserve({ start: 18, count: 2 });
    expect(a.freeCount).toBe(14);
    expect(a.allocate(14)).toEqual([{ start: 4, count: 14 }]);
    expect(code(() => a.free([{ start: 0, count: 1 }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.stageFree([{ start: 19, count: 1 }], 1))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.reserve({ start: 4, count: 1 }))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(a.isAllocated(0)).toBe(true);
    a.check();
    const b = new BitmapAllocator(1000);
    for (let i = 0; i < MAX_RESERVED_RANGES; i++) b.reserve({ start: i * 2, count: 1 });
    expect(code(() => b.reserve({ start: 500, count: 1 }))).toBe('ERR_VDE_TOO_LARGE');
    b.reserve({ start: 1, count: 1 }); // joins two ranges: allowed
    b.reserve({ start: 500, count: 1 });
    b.check();
  });

  it('stageFree defers reuse until commitFrees reaches the tag', () => {
    const a = new BitmapAllocator(8);
    const [x] = a.allocate(4);
    const [y] = a.allocate(4);
    a.stageFree([x!], 5);
    a.stageFree([{ start: y!.start, count: 2 }], 9);
    expect(a.stagedCount).toBe(6);
    expect(a.freeCount).toBe(0);
    expect(code(() => a.allocate(1))).toBe('ERR_VDE_FULL');
    expect(code(() => a.stageFree([{ start: 0, count: 1 }], 6))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.free([{ start: 0, count: 1 }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.stageFree([{ start: 6, count: 1 }], 1.5))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(a.commitFrees(4)).toEqual([]);
    expect(a.commitFrees(5)).toEqual([{ start: 0, count: 4 }]);
    expect([a.freeCount, a.stagedCount]).toEqual([4, 2]);
    expect(a.commitFrees(100)).toEqual([{ start: 4, count: 2 }]);
    expect([a.freeCount, a.stagedCount]).toEqual([6, 0]);
    a.check();
  });

  it('grow adds free blocks and merges with a free tail; never shrinks', () => {
    const a = new BitmapAllocator(33);
    a.allocate(30);
    a.grow(100);
    expect(a.freeCount).toBe(70);
    expect(a.largestFreeRun).toBe(70);
    expect(a.allocate(70)).toEqual([{ start: 30, count: 70 }]);
    a.grow(50);
    expect(a.blockCount).toBe(100);
    a.grow(100_000);
    expect(a.largestFreeRun).toBe(99_900);
    a.check();
    expect(code(() => a.grow(1.5))).toBe('ERR_VDE_INVALID_ARGUMENT');
  });

  it('rejects bad constructor and argument values with typed errors', () => {
    expect(code(() => new BitmapAllocator(-1))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => new BitmapAllocator(2 ** 32 + 1))).toBe('ERR_VDE_INVALID_ARGUMENT');
    const a = new BitmapAllocator(10);
    expect(code(() => a.allocate(0))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.allocate(2.5))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.isAllocated(-1))).toBe('ERR_VDE_RANGE');
    expect(code(() => a.isAllocated(0.5))).toBe('ERR_VDE_RANGE');
    expect(code(() => a.markAllocated(null as unknown as []))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.markAllocated([null as unknown as { start: number; count: number }]))).toBe('ERR_VDE_INVALID_ARGUMENT');
    expect(code(() => a.commitFrees(Number.NaN))).toBe('ERR_VDE_INVALID_ARGUMENT');
  });
});

describe('serialize / load', () => {
  function sample(): BitmapAllocator {
    const a = new BitmapAllocator(1000);
    a.reserve({ start: 0, count: 4 });
    a.reserve({ start: 900, count: 100 });
    a.allocate(123);
    a.free([{ start: 50, count: 10 }]);
    a.stageFree([{ start: 4, count: 3 }], 1);
    return a;
  }

  it('round-trips, with trailing padding, and does not persist staged frees', () => {
    const a = sample();
    const image = a.serialize();
    expect(image.byteLength).toBe(BitmapAllocator.serializedByteLength(1000));
    expect(BitmapAllocator.serializedByteLength(1000)).toBe(40 + 4 * 32 + 1024 + 4);
    const padded = new Uint8Array(4096);
    padded.set(image);
    const b = BitmapAllocator.load(padded);
    b.check();
    expect([b.blockCount, b.freeCount, b.largestFreeRun, b.stagedCount]).toEqual([1000, a.freeCount, a.largestFreeRun, 0]);
    for (let i = 0; i < 1000; i++) expect(b.isAllocated(i)).toBe(a.isAllocated(i));
    expect(b.isAllocated(5)).toBe(true); // staged: still allocated after load
    expect(code(() => b.free([{ start: 0, count: 1 }]))).toBe('ERR_VDE_INVALID_ARGUMENT'); // reserved survived
    b.free([{ start: 4, count: 3 }]);
    expect(b.serialize()).toEqual(BitmapAllocator.load(b.serialize()).serialize());
    const empty = BitmapAllocator.load(new BitmapAllocator(0).serialize());
    expect(empty.blockCount).toBe(0);
  });

  it('rejects every flipped byte', () => {
    const image = sample().serialize();
    for (let i = 0; i < image.byteLength; i += 7) {
      const bad = image.slice();
      bad[i] = bad[i]! ^ 0x40;
      const c = code(() => BitmapAllocator.load(bad));
      expect(['ERR_VDE_CORRUPT', 'ERR_VDE_FORMAT']).toContain(c);
    }
  });

  it('rejects bad magic, short images, huge blockCount, a wrong freeCount and bad reserved ranges', () => {
    const image = sample().serialize();
    const what = (img: Uint8Array) => {
      try {
        BitmapAllocator.load(img);
      } catch (err) {
        return [(err as { code: string }).code, (err as { what?: string }).what];
      }
      return undefined;
    };
    const magic = image.slice();
    magic[0] = 0x58;
    expect(what(magic)).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    expect(what(image.subarray(0, 100))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    expect(what(image.subarray(0, image.byteLength - 1))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    // blockCount = 2^32 - needs 512 MiB: refused by length before allocating.
    const huge = image.slice();
    new DataView(huge.buffer).setUint32(16, 0, true);
    new DataView(huge.buffer).setUint32(20, 1, true);
    expect(what(huge)).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    const wayTooHuge = image.slice();
    new DataView(wayTooHuge.buffer).setUint32(20, 0xffffffff, true);
    expect(what(wayTooHuge)).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    // A freeCount that disagrees with the bits, even with a valid checksum.
    const free = image.slice();
    const dv = new DataView(free.buffer);
    dv.setUint32(24, dv.getUint32(24, true) + 1, true);
    expect(what(resealed(free, 1000))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    // A reserved range count past the limit, and a reserved range over free blocks.
    const many = image.slice();
    new DataView(many.buffer).setUint32(32, 65, true);
    expect(what(resealed(many, 1000))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    const overFree = image.slice();
    const rangesAt = 40 + 4 * 32;
    new DataView(overFree.buffer).setUint32(rangesAt, 50, true); // first range now starts at a free block
    expect(what(resealed(overFree, 1000))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    const padding = image.slice();
    padding[40 + 4 * 31 + 3] = 0; // clears padding bits past block 1000
    expect(what(resealed(padding, 1000))).toEqual(['ERR_VDE_CORRUPT', 'allocator bitmap']);
    const version = image.slice();
    new DataView(version.buffer).setUint32(8, 2, true);
    expect(what(version)).toEqual(['ERR_VDE_FORMAT', undefined]);
  });
});
