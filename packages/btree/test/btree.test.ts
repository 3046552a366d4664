import { describe, expect, it } from 'vitest';
import { AbortedError, CorruptionError, InvalidArgumentError, ReadOnlyError, TooLargeError, crc32 } from '@vde/block-device';
import { BTree, type KeyRange, MemoryPageStore, type PageStore } from '@vde/btree';
import { batchesOf, expectSameContent, hex, type Model, modelRange, treeRange, utf8 } from './helpers.js';

const key4 = (i: number): Uint8Array => Uint8Array.of(i >>> 24, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff);
const val = (i: number, len = 12): Uint8Array => new Uint8Array(len).fill(i & 0xff);

/** A store that records reads and writes and can fail writes after a countdown. */
class RecordingStore implements PageStore {
  readonly inner: MemoryPageStore;
  reads = new Set<number>();
  writes: number[] = [];
  failWritesAfter = Infinity;
  constructor(pageSize: number) {
    this.inner = new MemoryPageStore(pageSize);
  }
  get pageSize(): number {
    return this.inner.pageSize;
  }
  async read(no: number): Promise<Uint8Array> {
    this.reads.add(no);
    return this.inner.read(no);
  }
  async write(no: number, page: Uint8Array): Promise<void> {
    if (this.failWritesAfter-- <= 0) throw new Error('injected write failure');
    this.writes.push(no);
    return this.inner.write(no, page);
  }
  allocate(): number {
    return this.inner.allocate();
  }
  free(no: number): void {
    this.inner.free(no);
  }
}

/** The page numbers reachable from `root` (check() reads every clean page once). */
async function reachable(store: MemoryPageStore, root: number): Promise<Set<number>> {
  const rec = new RecordingStore(store.pageSize);
  (rec as { inner: MemoryPageStore }).inner = store;
  const t = await BTree.open(rec, root, { readOnly: true, cacheSizeBytes: 0 });
  rec.reads.clear();
  await t.check();
  return rec.reads;
}

async function filled(pageSize: number, n: number, cacheSizeBytes = 1 << 20): Promise<{ store: MemoryPageStore; tree: BTree; model: Model }> {
  const store = new MemoryPageStore(pageSize);
  const tree = BTree.create(store, { cacheSizeBytes });
  const model: Model = new Map();
  for (let i = 0; i < n; i++) {
    const k = key4((i * 7919) % 1_000_003);
    await tree.put(k, val(i));
    model.set(hex(k), val(i));
  }
  return { store, tree, model };
}

describe('basics', () => {
  it('puts, gets, replaces and deletes, returning previous values', async () => {
    const tree = BTree.create(new MemoryPageStore(4096));
    expect(await tree.get(utf8('a'))).toBeUndefined();
    expect(await tree.put(utf8('a'), utf8('1'))).toBeUndefined();
    expect(await tree.put(utf8('a'), utf8('22'))).toEqual(utf8('1'));
    expect(await tree.get(utf8('a'))).toEqual(utf8('22'));
    expect(await tree.put(new Uint8Array(0), utf8('empty key'))).toBeUndefined();
    expect(await tree.get(new Uint8Array(0))).toEqual(utf8('empty key'));
    expect(await tree.delete(utf8('a'))).toEqual(utf8('22'));
    expect(await tree.delete(utf8('a'))).toBeUndefined();
    expect(await tree.count()).toBe(1);
    await tree.check();
  });

  it('orders keys by unsigned bytes, shorter prefix first', async () => {
    const tree = BTree.create(new MemoryPageStore(512));
    const ks = [[0x80], [0x7f], [0xff], [0x00], [0x7f, 0x00], []].map((a) => Uint8Array.from(a));
    for (const k of ks) await tree.put(k, k);
    const got: string[] = [];
    for await (const k of tree.keys()) got.push(hex(k));
    expect(got).toEqual(['', '00', '7f', '7f00', '80', 'ff']);
    await tree.check();
  });

  it('returned values are copies, not views of cached pages', async () => {
    const tree = BTree.create(new MemoryPageStore(512));
    await tree.put(utf8('k'), utf8('value'));
    const v = (await tree.get(utf8('k')))!;
    v.fill(0);
    expect(await tree.get(utf8('k'))).toEqual(utf8('value'));
    await tree.check();
  });

  it('has the limits of the README table', () => {
    const lim = (ps: number): number[] => {
      const t = BTree.create(new MemoryPageStore(ps));
      return [t.maxKeyBytes, t.maxValueBytes, t.maxEntryBytes];
    };
    expect(lim(512)).toEqual([157, 85, 242]);
    expect(lim(4096)).toEqual([1024, 1010, 2034]);
    expect(lim(65536)).toEqual([1024, 31730, 32754]);
  });

  it('rejects keys and values over the limits with TooLargeError, and accepts the maximum', async () => {
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 2048 });
    const bigKey = new Uint8Array(tree.maxKeyBytes + 1);
    // A value may use what a short key leaves of the entry limit, but key + value never exceed it.
    const bigValue = new Uint8Array(tree.maxEntryBytes);
    await expect(tree.put(bigKey, utf8('v'))).rejects.toBeInstanceOf(TooLargeError);
    await expect(tree.put(utf8('k'), bigValue)).rejects.toBeInstanceOf(TooLargeError);
    await expect(tree.put(new Uint8Array(tree.maxKeyBytes), new Uint8Array(tree.maxValueBytes + 1))).rejects.toBeInstanceOf(TooLargeError);
    await tree.put(utf8('k'), bigValue.subarray(1));
    expect((await tree.get(utf8('k')))?.length).toBe(tree.maxEntryBytes - 1);
    await tree.delete(utf8('k'));
    await expect(tree.get(bigKey)).rejects.toBeInstanceOf(TooLargeError);
    await expect(tree.delete(bigKey)).rejects.toBeInstanceOf(TooLargeError);
    expect(() => tree.putCached(bigKey, utf8('v'))).toThrow(TooLargeError);
    await expect(tree.bulkLoad([[bigKey, utf8('v')]])).rejects.toBeInstanceOf(TooLargeError);
    // Maximal entries: every split must still produce pages that fit.
    const model: Model = new Map();
    for (let i = 0; i < 300; i++) {
      const k = new Uint8Array(tree.maxKeyBytes).fill(7);
      k.set(key4(i * 2654435761), 0);
      const v = new Uint8Array(tree.maxValueBytes).fill(i & 0xff);
      await tree.put(k, v);
      model.set(hex(k), v);
    }
    await expectSameContent(tree, model);
    for (const k of [...model.keys()].slice(0, 250)) {
      await tree.delete(Buffer.from(k, 'hex'));
      model.delete(k);
    }
    await expectSameContent(tree, model);
  });

  it('rejects non-Uint8Array keys with InvalidArgumentError', async () => {
    const tree = BTree.create(new MemoryPageStore(512));
    await expect(tree.put('a' as unknown as Uint8Array, utf8('v'))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(tree.count({ gt: 'a' as unknown as Uint8Array })).rejects.toBeInstanceOf(InvalidArgumentError);
    await tree.check();
  });

  it('rejects a null store, a null range, a fractional limit, a non-boolean reverse and a non-iterable bulk load', async () => {
    expect(() => BTree.create(null as never)).toThrow(InvalidArgumentError);
    await expect(BTree.open(null as never, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    const tree = BTree.create(new MemoryPageStore(512));
    await tree.put(utf8('a'), utf8('1'));
    // entries() checks its range when called (as entryBatches does), count() in its promise.
    expect(() => tree.entries(null as never)).toThrow(InvalidArgumentError);
    expect(() => tree.entries({ limit: 1.5 })).toThrow(InvalidArgumentError);
    await expect(tree.count({ reverse: 'yes' as unknown as boolean })).rejects.toBeInstanceOf(InvalidArgumentError);
    // Still accepted: no range, a negative limit (no limit) and Infinity.
    expect(await tree.count()).toBe(1);
    expect(await tree.count({ limit: -1 })).toBe(1);
    expect(await tree.count({ limit: Infinity, reverse: true })).toBe(1);
    const empty = BTree.create(new MemoryPageStore(512));
    await expect(empty.bulkLoad(5 as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(empty.bulkLoad(null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await empty.bulkLoad([[utf8('k'), utf8('v')]]);
    expect(await empty.count()).toBe(1);
  });
});

describe('structure', () => {
  it('grows deep with long keys on small pages, and shrinks back when keys are deleted', async () => {
    const store = new MemoryPageStore(512);
    const tree = BTree.create(store, { cacheSizeBytes: 8 * 512 });
    const model: Model = new Map();
    // A long common prefix keeps separators long (suffix truncation cannot shorten them): fan-out ~4.
    const mk = (i: number): Uint8Array => {
      const k = new Uint8Array(100).fill(0x41);
      k.set(key4((i * 40503) % 65521), 96);
      return k;
    };
    for (let i = 0; i < 3000; i++) {
      await tree.put(mk(i), val(i, 8));
      model.set(hex(mk(i)), val(i, 8));
    }
    expect(tree.stats().depth).toBeGreaterThanOrEqual(5);
    await expectSameContent(tree, model);
    const { freedPages } = await tree.flush();
    for (const p of freedPages) store.free(p);
    for (let i = 0; i < 2990; i++) {
      await tree.delete(mk(i));
      model.delete(hex(mk(i)));
    }
    await expectSameContent(tree, model);
    // 10 entries of 114 bytes: at most 5 leaves (each at least a quarter full) and a root.
    expect(tree.stats().pages).toBeLessThanOrEqual(6);
    expect(tree.stats().depth).toBe(2);
    for (let i = 2990; i < 3000; i++) await tree.delete(mk(i));
    expect(tree.stats()).toMatchObject({ pages: 1, depth: 1 });
    await expectSameContent(tree, new Map());
  });

  it('a branch split keeps both halves at the minimum fill when a long separator moves up', async () => {
    // Found by the model test: the most even cut of the root left one half under the minimum fill (the key that
    // moves up counts on neither side).
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 2 * 512 });
    const rep = (b: number, n: number): Uint8Array => new Uint8Array(n).fill(b);
    const fill = async (n: number, tag: number, vlen: number): Promise<void> => {
      for (let i = 0; i < n; i++) await tree.put(Uint8Array.of(1, tag, i >> 8, i & 0xff), val(i, vlen));
    };
    const puts: [Uint8Array, number][] = [
      [Uint8Array.of(0), 3],
      [rep(1, 78), 39],
      [rep(2, 32), 31],
      [Uint8Array.of(1, 2), 47],
    ];
    for (const [k, n] of puts) await tree.put(k, val(0, n));
    await fill(71, 3, 6);
    for (const [k, n] of [[Uint8Array.of(2), 63], [Uint8Array.of(127), 21], [Uint8Array.of(2, 0, 0, 0, 0), 4], [Uint8Array.of(1, 127), 83]] as const) {
      await tree.put(k, val(0, n));
    }
    await fill(268, 2, 10);
    for (const [k, n] of [[rep(1, 150), 15], [rep(1, 155), 7], [Uint8Array.of(0, 0), 17], [new Uint8Array(0), 22], [rep(1, 80), 17], [Uint8Array.of(0, 0, 0, 0), 27]] as const) {
      await tree.put(k, val(0, n));
      await tree.check();
    }
  });

  it('reports stats, dirty and cached bytes; the clean cache stays within its bound', async () => {
    const { store, tree } = await filled(512, 2000, 16 * 512);
    expect(tree.dirtyBytes).toBe(tree.stats().dirtyPages * 512);
    expect(tree.dirtyBytes).toBeGreaterThan(16 * 512);
    const { freedPages } = await tree.flush();
    for (const p of freedPages) store.free(p);
    expect(tree.dirtyBytes).toBe(0);
    expect(tree.cachedBytes).toBeLessThanOrEqual(16 * 512);
    for (let i = 0; i < 500; i++) await tree.get(key4(i * 13));
    const s = tree.stats();
    expect(s.cachedPages * 512).toBe(tree.cachedBytes);
    expect(tree.cachedBytes).toBeLessThanOrEqual(16 * 512);
    expect(s.misses).toBeGreaterThan(0);
    expect(s.evictions).toBeGreaterThan(0);
    expect(s.hits).toBeGreaterThan(s.misses);
    await tree.put(key4(1), val(1));
    expect(tree.dirtyBytes).toBe(s.depth * 512);
    await tree.check();
  });
});

describe('ranges', () => {
  it('handles prefix (including 0xff), bounds, reverse and limit', async () => {
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 4 * 512 });
    const model: Model = new Map();
    const keys = [[], [0], [1], [1, 0], [1, 0xff], [1, 0xff, 0xff], [2], [0xff], [0xff, 0], [0xff, 0xff], [0xff, 0xff, 3]];
    for (let i = 0; i < 200; i++) keys.push([0x10, i]);
    for (const a of keys) {
      const k = Uint8Array.from(a);
      await tree.put(k, k);
      model.set(hex(k), k);
    }
    const ranges = [
      { prefix: Uint8Array.of(0xff) },
      { prefix: Uint8Array.of(0xff, 0xff) },
      { prefix: Uint8Array.of(1, 0xff) },
      { prefix: Uint8Array.of(0x10), gt: Uint8Array.of(0x10, 50), lte: Uint8Array.of(0x10, 150), reverse: true, limit: 7 },
      { gt: Uint8Array.of(5), lt: Uint8Array.of(2) },
      { gte: Uint8Array.of(1), lte: Uint8Array.of(1) },
      { gt: Uint8Array.of(1), lt: Uint8Array.of(1) },
      { limit: 0 },
      { reverse: true, limit: 3 },
      { prefix: new Uint8Array(0), limit: -1 },
      { gte: Uint8Array.of(0x10, 3), gt: Uint8Array.of(0x10, 3), lt: Uint8Array.of(0x10, 9), lte: Uint8Array.of(0x10, 200) },
    ];
    for (const r of ranges) {
      expect(await treeRange(tree, r)).toEqual(modelRange(model, r));
      expect(await tree.count(r)).toBe(modelRange(model, r).length);
    }
    await tree.check();
  });

  it('a cursor tolerates concurrent puts and deletes: ordered, no duplicates, sees every stable key', async () => {
    for (const reverse of [false, true]) {
      const { tree, model } = await filled(512, 3000, 6 * 512);
      const stable = new Set(model.keys());
      const everSeen = new Set(model.keys());
      const out: string[] = [];
      let i = 0;
      for await (const [k] of tree.entries({ reverse })) {
        out.push(hex(k));
        // Mutate other keys ahead of, behind and around the cursor (the engine serializes per key).
        for (let j = 0; j < 4; j++) {
          const victim = key4(((i * 31 + j * 977) * 7919) % 1_000_003);
          // New keys land anywhere in the key space (ahead of the cursor too), so the scan still ends.
          const fresh = key4(((i * 131 + j * 17 + 7) * 104729) % 1_000_003);
          if (j % 2 === 0) {
            await tree.delete(victim);
            stable.delete(hex(victim));
          } else {
            await tree.put(fresh, val(j, 20 + j * 10));
            everSeen.add(hex(fresh));
          }
        }
        // Readers in between evict cursor pages from the tiny cache.
        await tree.get(key4(i * 13));
        i++;
      }
      const sorted = [...out].sort();
      if (reverse) sorted.reverse();
      expect(out).toEqual(sorted);
      expect(new Set(out).size).toBe(out.length);
      for (const k of stable) expect(out).toContain(k);
      for (const k of out) expect(everSeen.has(k)).toBe(true);
      await tree.check();
    }
  });

  it('an abandoned cursor releases its pins', async () => {
    const { tree } = await filled(512, 2000, 4 * 512);
    await tree.flush();
    for await (const _k of tree.keys()) break;
    for (let i = 0; i < 200; i++) await tree.get(key4(i));
    expect(tree.cachedBytes).toBeLessThanOrEqual(4 * 512);
    await tree.check();
  });
});

describe('bulkLoad', () => {
  it('gives the same content as inserts, with full pages, under every page size', async () => {
    for (const [pageSize, n] of [[512, 3001], [4096, 20_000], [65536, 20_000]] as const) {
      const entries: [Uint8Array, Uint8Array][] = [];
      for (let i = 0; i < n; i++) entries.push([key4(i * 3), val(i, (i % 50) + 1)]);
      const bulk = BTree.create(new MemoryPageStore(pageSize));
      await bulk.bulkLoad(entries);
      const ins = BTree.create(new MemoryPageStore(pageSize));
      for (const [k, v] of [...entries].reverse()) await ins.put(k, v);
      expect(await treeRange(bulk, {})).toEqual(await treeRange(ins, {}));
      expect(await bulk.count()).toBe(n);
      await bulk.check();
      await ins.check();
      expect(bulk.stats().pages).toBeLessThan(ins.stats().pages);
    }
  });

  it('balances the last page for every small size and accepts async iterables', async () => {
    for (let n = 0; n < 60; n++) {
      const store = new MemoryPageStore(512);
      const tree = BTree.create(store, { cacheSizeBytes: 2 * 512 });
      async function* gen(): AsyncGenerator<[Uint8Array, Uint8Array]> {
        for (let i = 0; i < n; i++) yield [key4(i), val(i, 30)];
      }
      await tree.bulkLoad(gen());
      expect(await tree.count()).toBe(n);
      await tree.check();
      // The loaded tree is an ordinary tree: mutate, flush, reopen.
      await tree.put(key4(1000), val(1));
      const { root } = await tree.flush();
      const again = await BTree.open(store, root);
      expect(await again.count()).toBe(n + 1);
      await again.check();
    }
  });

  it('rejects unordered input, duplicates and a non-empty tree, leaving the tree empty', async () => {
    const store = new MemoryPageStore(512);
    const tree = BTree.create(store);
    const before = store.pagesInUse;
    const entries: [Uint8Array, Uint8Array][] = [];
    for (let i = 0; i < 500; i++) entries.push([key4(i), val(i)]);
    await expect(tree.bulkLoad([...entries, [key4(3), val(3)]])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(tree.bulkLoad([...entries, [key4(499), val(3)]])).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await tree.count()).toBe(0);
    expect(store.pagesInUse).toBe(before);
    await tree.put(key4(1), val(1));
    await expect(tree.bulkLoad(entries)).rejects.toBeInstanceOf(InvalidArgumentError);
    await tree.check();
  });
});

describe('flush (copy-on-write)', () => {
  it('keeps the old root readable, never writes its pages, and frees only unreferenced pages', async () => {
    const store = new RecordingStore(512);
    const tree = BTree.create(store, { cacheSizeBytes: 8 * 512 });
    const model: Model = new Map();
    for (let i = 0; i < 1500; i++) {
      await tree.put(key4(i * 5), val(i));
      model.set(hex(key4(i * 5)), val(i));
    }
    expect(tree.root).toBe(-1);
    const first = await tree.flush();
    expect(first.root).toBe(tree.root);
    expect(await tree.flush()).toEqual({ root: first.root, freedPages: [] });
    const oldModel = new Map(model);
    const oldPages = await reachable(store.inner, first.root);
    for (let i = 0; i < 700; i++) {
      await tree.delete(key4(i * 10));
      model.delete(hex(key4(i * 10)));
      await tree.put(key4(i * 5 + 1), val(i, 40));
      model.set(hex(key4(i * 5 + 1)), val(i, 40));
    }
    store.writes = [];
    const second = await tree.flush();
    expect(second.root).not.toBe(first.root);
    for (const w of store.writes) expect(oldPages.has(w)).toBe(false);
    expect(second.freedPages.length).toBeGreaterThan(0);
    for (const p of second.freedPages) expect(oldPages.has(p)).toBe(true);
    // The previous tree still reads the previous content.
    const old = await BTree.open(store, first.root, { readOnly: true, cacheSizeBytes: 4 * 512 });
    await expectSameContent(old, oldModel);
    // The new tree does not reference a freed page: free them for real, then read everything.
    const newPages = await reachable(store.inner, second.root);
    for (const p of second.freedPages) {
      expect(newPages.has(p)).toBe(false);
      store.free(p);
    }
    await expectSameContent(tree, model);
    await expectSameContent(await BTree.open(store, second.root), model);
  });

  it('a flush that fails midway leaves the previous root valid, and a retry succeeds', async () => {
    const store = new RecordingStore(512);
    const tree = BTree.create(store, { cacheSizeBytes: 4 * 512 });
    const model: Model = new Map();
    for (let i = 0; i < 800; i++) {
      await tree.put(key4(i), val(i));
      model.set(hex(key4(i)), val(i));
    }
    const first = await tree.flush();
    const oldModel = new Map(model);
    for (let i = 0; i < 800; i += 3) {
      await tree.put(key4(i), val(i + 1, 20));
      model.set(hex(key4(i)), val(i + 1, 20));
    }
    store.failWritesAfter = 3;
    await expect(tree.flush()).rejects.toThrow('injected write failure');
    expect(tree.root).toBe(first.root);
    await expectSameContent(await BTree.open(store, first.root, { readOnly: true }), oldModel);
    store.failWritesAfter = Infinity;
    const second = await tree.flush();
    await expectSameContent(await BTree.open(store, second.root, { readOnly: true }), model);
    await expectSameContent(tree, model);
  });

  it('mutations while a flush writes do not change what it writes (pages are lent to the store)', async () => {
    // A store that takes its copy only when the write resolves: a page changed in place meanwhile would be
    // written with the later bytes (and a checksum that no longer matches).
    class SlowStore extends RecordingStore {
      onWrite: () => void = () => undefined;
      override async write(no: number, page: Uint8Array): Promise<void> {
        this.onWrite();
        await new Promise((r) => setTimeout(r, 2));
        return super.write(no, page);
      }
    }
    const store = new SlowStore(512);
    const tree = BTree.create(store, { cacheSizeBytes: 64 * 512 });
    const model: Model = new Map();
    for (let i = 0; i < 1500; i++) {
      await tree.put(key4(i * 3), val(i));
      model.set(hex(key4(i * 3)), val(i));
    }
    await tree.flush();
    for (let i = 0; i < 1500; i += 5) {
      await tree.put(key4(i * 3), val(i + 1));
      model.set(hex(key4(i * 3)), val(i + 1));
    }
    const atFlush = new Map(model);
    const writing = new Promise<void>((r) => (store.onWrite = r));
    const pending = tree.flush();
    await writing; // the flush has taken its snapshot and its writes are in flight
    // Same-length overwrites (in place), longer values, inserts (splits) and deletes (merges), all synchronous.
    for (let i = 0; i < 1500; i++) {
      const k = key4(i * 3);
      const v = i % 4 === 0 ? val(i + 2) : i % 4 === 1 ? val(i, 30) : null;
      const r = v === null ? tree.deleteCached(k) : tree.putCached(k, v);
      if (!r.done) continue;
      if (v === null) model.delete(hex(k));
      else model.set(hex(k), v);
      const fresh = key4(i * 3 + 1);
      if (tree.putCached(fresh, val(i, 25)).done) model.set(hex(fresh), val(i, 25));
    }
    const { root } = await pending;
    await expectSameContent(await BTree.open(store, root, { readOnly: true }), atFlush);
    await expectSameContent(tree, model);
    const again = await tree.flush();
    await expectSameContent(await BTree.open(store, again.root, { readOnly: true }), model);
  });

  it('read-only trees refuse mutations', async () => {
    const { store, tree } = await filled(512, 100);
    const { root } = await tree.flush();
    const ro = await BTree.open(store, root, { readOnly: true });
    await expect(ro.put(key4(1), val(1))).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(ro.delete(key4(1))).rejects.toBeInstanceOf(ReadOnlyError);
    expect(() => ro.putCached(key4(1), val(1))).toThrow(ReadOnlyError);
    expect(() => ro.deleteCached(key4(1))).toThrow(ReadOnlyError);
    await expect(ro.bulkLoad([])).rejects.toBeInstanceOf(ReadOnlyError);
    expect(() => BTree.create(store, { readOnly: true })).toThrow(InvalidArgumentError);
    expect(await ro.count()).toBe(100);
    expect(await ro.flush()).toEqual({ root, freedPages: [] });
    await ro.check();
  });
});

describe('cached mutations', () => {
  it('putCached/deleteCached change nothing when a page is missing, and succeed after prefetch', async () => {
    const { store, tree, model } = await filled(512, 3000, 2 * 512);
    const { freedPages } = await tree.flush();
    for (const p of freedPages) store.free(p);
    let failures = 0;
    const keys = [...model.keys()];
    for (let i = 0; i < keys.length; i += 2) {
      const k = Buffer.from(keys[i]!, 'hex');
      // Touch a far-away key so the path of k is (mostly) evicted.
      await tree.get(Buffer.from(keys[(i + 1500) % keys.length]!, 'hex'));
      for (let attempt = 0; ; attempt++) {
        const before = { dirty: tree.dirtyBytes, pages: tree.stats().pages };
        const r = tree.deleteCached(k);
        if (r.done) {
          expect(hex(r.previous!)).toBe(hex(model.get(keys[i]!)!));
          model.delete(keys[i]!);
          break;
        }
        failures++;
        expect({ dirty: tree.dirtyBytes, pages: tree.stats().pages }).toEqual(before);
        expect(await tree.get(k)).toEqual(model.get(keys[i]!));
        expect(attempt).toBeLessThan(3);
        await tree.prefetch(k);
      }
    }
    expect(failures).toBeGreaterThan(100);
    await expectSameContent(tree, model);
    // A put into a fully cached path needs no prefetch.
    await tree.prefetch(key4(5));
    expect(tree.putCached(key4(5), val(5)).done).toBe(true);
    await tree.check();
  });
});

describe('corruption', () => {
  async function flushedTree(): Promise<{ store: MemoryPageStore; root: number; leafNo: number }> {
    const store = new MemoryPageStore(512);
    const tree = BTree.create(store);
    for (let i = 0; i < 400; i++) await tree.put(key4(i), val(i));
    const { root } = await tree.flush();
    const pages = [...(await reachable(store, root))];
    return { store, root, leafNo: pages[pages.length - 1]! };
  }
  const reseal = (b: Uint8Array): void => {
    const c = crc32(b.subarray(4));
    b[0] = c & 0xff;
    b[1] = (c >>> 8) & 0xff;
    b[2] = (c >>> 16) & 0xff;
    b[3] = c >>> 24;
  };
  async function expectCorrupt(store: MemoryPageStore, root: number, pageNo: number): Promise<void> {
    const t = await BTree.open(store, root, { cacheSizeBytes: 0 });
    const err = await t.check().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).what).toBe(`btree page ${pageNo}`);
    const t2 = await BTree.open(store, root, { cacheSizeBytes: 0 });
    await expect(
      (async () => {
        for await (const _ of t2.entries()) {
          /* scan everything */
        }
      })(),
    ).rejects.toBeInstanceOf(CorruptionError);
  }

  it('a flipped bit gives CorruptionError naming the page', async () => {
    const { store, root, leafNo } = await flushedTree();
    const page = await store.read(leafNo);
    page[300]! ^= 0x10;
    await store.write(leafNo, page);
    await expectCorrupt(store, root, leafNo);
  });

  it('hostile counts, lengths and levels with valid checksums give CorruptionError', async () => {
    const mutations: ((b: Uint8Array) => void)[] = [
      (b) => ((b[8] = 0xff), (b[9] = 0xff)), // count 65535
      (b) => ((b[12] = 0xff), (b[13] = 0xff), (b[14] = 0xff), (b[15] = 0x7f)), // heapStart far outside
      (b) => ((b[16] = 0xff), (b[17] = 0x01)), // slot 0 points past the page
      (b) => (b[7] = 5), // leaf claiming level 5
      (b) => ((b[6] = 2), (b[7] = 1)), // leaf turned into a branch
      (b) => (b[4] = 0), // magic
      (b) => {
        // key length of entry 0 huge
        const off = b[16]! | (b[17]! << 8);
        b[off] = 0xff;
        b[off + 1] = 0xff;
      },
      (b) => {
        // swap the first two slots: keys out of order
        const s0 = b[16]!, s1 = b[17]!;
        b[16] = b[18]!;
        b[17] = b[19]!;
        b[18] = s0;
        b[19] = s1;
      },
    ];
    for (const mutate of mutations) {
      const { store, root, leafNo } = await flushedTree();
      const page = await store.read(leafNo);
      mutate(page);
      reseal(page);
      await store.write(leafNo, page);
      await expectCorrupt(store, root, leafNo);
    }
  });

  it('a branch with one child is CorruptionError when read, never a raw Error from a delete under it', async () => {
    const { store, root } = await flushedTree();
    const page = await store.read(root);
    expect(page[6]).toBe(2);
    page[8] = 1; // count 1: only child 0 is left (a checksummed page the tree never writes)
    page[9] = 0;
    reseal(page);
    await store.write(root, page);
    const attempt = async (): Promise<void> => {
      const t = await BTree.open(store, root, { cacheSizeBytes: 0 });
      for (let i = 0; i < 400; i++) await t.delete(key4(i));
    };
    await expect(attempt()).rejects.toBeInstanceOf(CorruptionError);
  });

  it('a branch pointing at itself or at a page of the wrong level is caught (no infinite recursion)', async () => {
    const { store, root } = await flushedTree();
    const page = await store.read(root);
    expect(page[6]).toBe(2);
    const off = page[16]! | (page[17]! << 8);
    page[off] = root & 0xff;
    page[off + 1] = (root >>> 8) & 0xff;
    page[off + 2] = (root >>> 16) & 0xff;
    page[off + 3] = root >>> 24;
    reseal(page);
    await store.write(root, page);
    const t = await BTree.open(store, root, { cacheSizeBytes: 0 });
    await expect(t.get(key4(0))).rejects.toBeInstanceOf(CorruptionError);
    await expect(t.check()).rejects.toBeInstanceOf(CorruptionError);
  });

  it('an under-full page is corrupt unless it is the last page of its level', async () => {
    const store = new MemoryPageStore(512);
    const tree = BTree.create(store);
    // Random order: no append splits, every page at least at the minimum fill.
    for (let i = 0; i < 400; i++) await tree.put(key4((i * 7919) % 1009), val(i));
    const { root } = await tree.flush();
    await (await BTree.open(store, root)).check();
    const childOf = (b: Uint8Array, i: number): number => {
      const off = b[16 + 2 * i]! | (b[17 + 2 * i]! << 8);
      return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
    };
    const count = (b: Uint8Array): number => b[8]! | (b[9]! << 8);
    /** The leaf reached by always taking child `pick(count)`. */
    async function leafBy(pick: (n: number) => number): Promise<number> {
      let no = root;
      for (;;) {
        const b = await store.read(no);
        if (b[6] === 1) return no;
        no = childOf(b, pick(count(b)));
      }
    }
    const trim = async (no: number): Promise<void> => {
      const b = await store.read(no);
      b[8] = 1; // keep only entry 0 (the others become holes)
      b[9] = 0;
      reseal(b);
      await store.write(no, b);
    };
    // The last leaf may be under-full (an append split leaves it so).
    const last = await leafBy((n) => n - 1);
    await trim(last);
    await (await BTree.open(store, root)).check();
    // The first leaf may not.
    const first = await leafBy(() => 0);
    await trim(first);
    const t = await BTree.open(store, root, { cacheSizeBytes: 0 });
    const err = await t.check().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).what).toBe(`btree page ${first}`);
    expect((err as Error).message).toContain('minimum fill');
  });

  it('opening a never-written page is a CorruptionError', async () => {
    const store = new MemoryPageStore(4096);
    const no = store.allocate();
    await expect(BTree.open(store, no)).rejects.toBeInstanceOf(CorruptionError);
  });
});

describe('sequential inserts', () => {
  const wkey = (prefix: string, i: number): Uint8Array => utf8(`${prefix}/${String(i).padStart(9, '0')}`);
  const v100 = new Uint8Array(100).fill(3);

  async function build(keys: Uint8Array[], cached: boolean): Promise<{ tree: BTree; model: Model }> {
    const tree = BTree.create(new MemoryPageStore(4096), { cacheSizeBytes: 64 << 20 });
    const model: Model = new Map();
    for (const k of keys) {
      if (cached) expect(tree.putCached(k, v100).done).toBe(true);
      else await tree.put(k, v100);
      model.set(hex(k), v100);
    }
    return { tree, model };
  }

  async function bulkPages(keys: Uint8Array[]): Promise<number> {
    const sorted = [...keys].sort((a, b) => Buffer.compare(a, b));
    const t = BTree.create(new MemoryPageStore(4096));
    await t.bulkLoad(sorted.map((k) => [k, v100] as [Uint8Array, Uint8Array]));
    return t.stats().pages;
  }

  it('ascending keys on the right edge fill pages like a bulk load (append split)', async () => {
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 20_000; i++) keys.push(wkey('w3', i));
    const { tree, model } = await build(keys, true);
    // The last page of each level may be under the minimum fill; check() accepts exactly that.
    await expectSameContent(tree, model);
    expect(tree.stats().pages).toBeLessThanOrEqual((await bulkPages(keys)) + 2);
  });

  it('ascending keys in the middle, descending keys and interleaved streams keep pages at least about 3/4 full', async () => {
    const patterns: [string, Uint8Array[]][] = [];
    const middle: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) middle.push(wkey('w9', i));
    for (let i = 0; i < 20_000; i++) middle.push(wkey('w3', i));
    patterns.push(['ascending in the middle', middle]);
    const desc: Uint8Array[] = [];
    for (let i = 20_000; i > 0; i--) desc.push(wkey('w3', i));
    patterns.push(['descending', desc]);
    const descMiddle: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) descMiddle.push(wkey('w0', i));
    for (let i = 20_000; i > 0; i--) descMiddle.push(wkey('w3', i));
    patterns.push(['descending in the middle', descMiddle]);
    const streams: Uint8Array[] = [];
    for (let i = 0; i < 5_000; i++) for (const w of ['w1', 'w2', 'w3', 'w4']) streams.push(wkey(w, i));
    patterns.push(['four interleaved ascending streams', streams]);
    for (const [name, keys] of patterns) {
      const { tree, model } = await build(keys, false);
      await expectSameContent(tree, model);
      const full = await bulkPages(keys);
      // Halving splits would need about twice the pages of a bulk load.
      expect(tree.stats().pages, name).toBeLessThan(full * 1.4);
    }
  });

  it('an append split leaves the full left leaf as it is: only the new leaf and the ancestors become dirty', async () => {
    const store = new MemoryPageStore(4096);
    const tree = BTree.create(store, { cacheSizeBytes: 64 << 20 });
    let splits = 0;
    for (let i = 0; i < 3_000; i++) {
      await tree.flush();
      const pages = tree.stats().pages;
      expect(tree.putCached(wkey('w3', i), v100).done).toBe(true);
      const s = tree.stats();
      if (s.pages > pages && s.pages === pages + 1) {
        // A leaf split below an existing root: the new leaf + the ancestors (the old leaf is not rewritten).
        splits++;
        expect(s.dirtyPages).toBe(s.depth);
      }
    }
    expect(splits).toBeGreaterThan(50);
    await tree.check();
  });

  it('deletes rebalance under-full last pages', async () => {
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 5_000; i++) keys.push(wkey('w3', i));
    const { tree, model } = await build(keys, true);
    // Delete from the end (the under-full last pages merge into their left neighbours) and from the front.
    for (let i = 4_999; i >= 3_000; i--) {
      await tree.delete(keys[i]!);
      model.delete(hex(keys[i]!));
    }
    await expectSameContent(tree, model);
    for (let i = 0; i < 2_500; i++) {
      await tree.delete(keys[i]!);
      model.delete(hex(keys[i]!));
    }
    await expectSameContent(tree, model);
  });
});

describe('getCachedView', () => {
  it('returns a view of the cached value, null for an absent key, undefined when a page is not cached', async () => {
    const { store, tree, model } = await filled(512, 2000, 1 << 20);
    for (const [kh, v] of [...model].slice(0, 200)) {
      const view = tree.getCachedView(Buffer.from(kh, 'hex'));
      expect(view).toBeInstanceOf(Uint8Array);
      expect(hex(view!)).toBe(hex(v));
      // A view into the 512-byte page, not a copy.
      expect(view!.buffer.byteLength).toBe(512);
    }
    expect(tree.getCachedView(utf8('absent'))).toBeNull();
    expect(tree.getCachedView(new Uint8Array(0))).toBeNull();
    expect(() => tree.getCachedView('k' as unknown as Uint8Array)).toThrow(InvalidArgumentError);
    expect(() => tree.getCachedView(new Uint8Array(tree.maxKeyBytes + 1))).toThrow(TooLargeError);
    const { root, freedPages } = await tree.flush();
    for (const p of freedPages) store.free(p);
    // A cold tree: only the root is cached after open.
    const cold = await BTree.open(store, root, { cacheSizeBytes: 64 * 512 });
    const [kh, v] = [...model][1234]!;
    const k = Buffer.from(kh, 'hex');
    const before = cold.stats();
    expect(cold.getCachedView(k)).toBeUndefined();
    expect(cold.getCachedView(utf8('absent'))).toBeUndefined();
    const after = cold.stats();
    expect(after.misses).toBe(before.misses);
    expect(after.hits).toBe(before.hits + 2);
    expect(await cold.get(k)).toEqual(v);
    // get() loaded the path: now the view is there, and costs one hit per level like get().
    const h0 = cold.stats().hits;
    expect(hex(cold.getCachedView(k)!)).toBe(hex(v));
    expect(cold.stats().hits - h0).toBe(cold.stats().depth);
    expect(cold.stats().misses).toBe(after.misses + cold.stats().depth - 1);
  });
});

describe.each([
  ['entryBatches', false],
  ['entryRuns', true],
])('%s', (_name, runs) => {
  async function rangeTree(): Promise<{ tree: BTree; model: Model }> {
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 4 * 512 });
    const model: Model = new Map();
    const keys = [[], [0], [1], [1, 0], [1, 0xff], [1, 0xff, 0xff], [2], [0xff], [0xff, 0], [0xff, 0xff], [0xff, 0xff, 3]];
    for (let i = 0; i < 400; i++) keys.push([0x10, i >> 8, i & 0xff]);
    for (const a of keys) {
      const k = Uint8Array.from(a);
      await tree.put(k, k);
      model.set(hex(k), k);
    }
    return { tree, model };
  }

  it('gives the entries of entries() for every range option, one leaf copy per batch', async () => {
    const { tree, model } = await rangeTree();
    const base = [
      {},
      { prefix: Uint8Array.of(0xff) },
      { prefix: Uint8Array.of(0x10) },
      { prefix: Uint8Array.of(1, 0xff) },
      { gt: Uint8Array.of(0x10, 0, 50), lte: Uint8Array.of(0x10, 1, 50) },
      { gte: Uint8Array.of(0x10, 0, 50), lt: Uint8Array.of(0x10, 1, 50) },
      { gt: Uint8Array.of(5), lt: Uint8Array.of(2) },
      { gte: Uint8Array.of(1), lte: Uint8Array.of(1) },
      { gt: Uint8Array.of(1), lt: Uint8Array.of(1) },
      { prefix: Uint8Array.of(0x10), gt: Uint8Array.of(0x10, 0, 7), lt: Uint8Array.of(0x10, 1, 0x80) },
    ];
    let multi = 0;
    for (const r0 of base) {
      for (const reverse of [false, true]) {
        for (const limit of [undefined, -1, 0, 1, 7, 100]) {
          const r: KeyRange = { ...r0, reverse, ...(limit === undefined ? {} : { limit }) };
          const got: [string, string][] = [];
          let batches = 0;
          for await (const batch of batchesOf(tree, r, runs)) {
            batches++;
            expect(batch.keys.length).toBeGreaterThan(0);
            expect(batch.values.length).toBe(batch.keys.length);
            const buf = batch.keys[0]!.buffer;
            expect(buf.byteLength).toBe(512);
            batch.keys.forEach((k, i) => {
              expect(k.buffer).toBe(buf);
              expect(batch.values[i]!.buffer).toBe(buf);
              got.push([hex(k), hex(batch.values[i]!)]);
            });
          }
          expect(got).toEqual(modelRange(model, r));
          expect(got).toEqual(await treeRange(tree, r));
          if (batches > 1) multi++;
        }
      }
    }
    expect(multi).toBeGreaterThan(10);
    await tree.check();
  });

  it('validates the range at the call, like entries()', () => {
    const tree = BTree.create(new MemoryPageStore(512));
    expect(() => tree.entryBatches({ gt: 'a' as unknown as Uint8Array })).toThrow(InvalidArgumentError);
    expect(() => tree.entryRuns({ gt: 'a' as unknown as Uint8Array })).toThrow(InvalidArgumentError);
    expect(() => tree.entries({ gt: 'a' as unknown as Uint8Array })).toThrow(InvalidArgumentError);
  });

  it('continues after the last key of a batch when the tree changed: ordered, no duplicates, every stable key', async () => {
    for (const reverse of [false, true]) {
      const { tree, model } = await filled(512, 3000, 6 * 512);
      const stable = new Set(model.keys());
      const everSeen = new Set(model.keys());
      const out: string[] = [];
      let i = 0;
      for await (const { keys } of batchesOf(tree, { reverse }, runs)) {
        for (const k of keys) out.push(hex(k));
        for (let j = 0; j < 6; j++) {
          const victim = key4(((i * 31 + j * 977) * 7919) % 1_000_003);
          const fresh = key4(((i * 131 + j * 17 + 7) * 104729) % 1_000_003);
          if (j % 2 === 0) {
            await tree.delete(victim);
            stable.delete(hex(victim));
          } else {
            await tree.put(fresh, val(j, 20 + j * 10));
            everSeen.add(hex(fresh));
          }
        }
        await tree.get(key4(i * 13));
        i++;
      }
      const sorted = [...out].sort();
      if (reverse) sorted.reverse();
      expect(out).toEqual(sorted);
      expect(new Set(out).size).toBe(out.length);
      for (const k of stable) expect(out).toContain(k);
      for (const k of out) expect(everSeen.has(k)).toBe(true);
      await tree.check();
    }
  });

  it('an abandoned batch cursor releases its pins', async () => {
    const { tree } = await filled(512, 2000, 4 * 512);
    await tree.flush();
    for await (const _b of runs ? tree.entryRuns() : tree.entryBatches()) break;
    for (let i = 0; i < 200; i++) await tree.get(key4(i));
    expect(tree.cachedBytes).toBeLessThanOrEqual(4 * 512);
  });
});

describe('MemoryPageStore', () => {
  it('validates sizes and counts pages in use', async () => {
    expect(() => new MemoryPageStore(1000)).toThrow(InvalidArgumentError);
    const s = new MemoryPageStore(512);
    const a = s.allocate();
    const b = s.allocate();
    expect(s.pagesInUse).toBe(2);
    await expect(s.write(a, new Uint8Array(100))).rejects.toBeInstanceOf(InvalidArgumentError);
    const page = new Uint8Array(512).fill(9);
    await s.write(a, page);
    page.fill(0);
    expect((await s.read(a))[0]).toBe(9);
    s.free(b);
    expect(s.pagesInUse).toBe(1);
    expect(s.allocate()).toBe(b);
  });
});

describe('check() with a signal', () => {
  it('an abort stops the check before the next page with AbortedError', async () => {
    const { store, tree } = await filled(512, 3000);
    const { root } = await tree.flush();
    const rec = new RecordingStore(512);
    (rec as { inner: MemoryPageStore }).inner = store;
    const t = await BTree.open(rec, root, { readOnly: true, cacheSizeBytes: 0 });
    const all = (await t.check()).pageNumbers.length;
    expect(all).toBeGreaterThan(50);
    const ac = new AbortController();
    let reads = 0;
    const counting: PageStore = {
      pageSize: 512,
      read: async (no) => {
        if (++reads === 3) ac.abort(new Error('stop'));
        return await store.read(no);
      },
      write: (no, page) => store.write(no, page),
      allocate: () => store.allocate(),
      free: (no) => store.free(no),
    };
    const u = await BTree.open(counting, root, { readOnly: true, cacheSizeBytes: 0 });
    reads = 0;
    const err = await u.check({ signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortedError);
    expect((err as AbortedError).cause).toEqual(new Error('stop'));
    expect(reads).toBe(3);
    await t.check();
  });
});
