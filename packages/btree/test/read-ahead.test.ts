import { describe, expect, it } from 'vitest';
import { BTree, MemoryPageStore, type PageStore } from '@vde/btree';
import { expectSameContent, hex, type Model } from './helpers.js';

const key4 = (i: number): Uint8Array => Uint8Array.of(i >>> 24, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff);
const val = (i: number, len = 12): Uint8Array => new Uint8Array(len).fill(i & 0xff);

/**
 * A store whose reads take the page image when they are issued (as a disk read would) and resolve when the test
 * lets them: at once (`hold` false, after a turn of the event loop), or when released (`hold` true).
 */
class SlowStore implements PageStore {
  readonly pageSize: number;
  hold = false;
  inFlight = 0;
  maxInFlight = 0;
  reads: number[] = [];
  readonly held: { no: number; release: () => void }[] = [];
  constructor(readonly inner: MemoryPageStore) {
    this.pageSize = inner.pageSize;
  }
  async read(no: number): Promise<Uint8Array> {
    this.reads.push(no);
    const image = await this.inner.read(no);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold) await new Promise<void>((release) => this.held.push({ no, release }));
      else await new Promise((resolve) => setImmediate(resolve));
      return image;
    } finally {
      this.inFlight--;
    }
  }
  write(no: number, page: Uint8Array): Promise<void> {
    return this.inner.write(no, page);
  }
  allocate(): number {
    return this.inner.allocate();
  }
  free(no: number): void {
    this.inner.free(no);
  }
}

/** A flushed tree of `n` entries in a memory store, and its model. */
async function flushed(pageSize: number, n: number): Promise<{ inner: MemoryPageStore; root: number; model: Model }> {
  const inner = new MemoryPageStore(pageSize);
  const tree = BTree.create(inner);
  const model: Model = new Map();
  for (let i = 0; i < n; i++) {
    await tree.put(key4(i * 3), val(i));
    model.set(hex(key4(i * 3)), val(i));
  }
  const { root, freedPages } = await tree.flush();
  for (const p of freedPages) inner.free(p);
  return { inner, root, model };
}

describe('scans read the next leaves ahead', () => {
  it('a scan of a tree that is not cached has several leaf reads in flight, and finds every entry', async () => {
    const { inner, root, model } = await flushed(512, 5000);
    const store = new SlowStore(inner);
    const tree = await BTree.open(store, root, { cacheSizeBytes: 1 << 20 });
    let n = 0;
    for await (const [k, v] of tree.entries()) {
      expect(v).toEqual(model.get(hex(k)));
      n++;
    }
    expect(n).toBe(5000);
    // Before: one page read at a time (the scan waited for each leaf in turn).
    expect(store.maxInFlight).toBeGreaterThan(8);
    expect(tree.stats().readAhead).toBeGreaterThan(0);
    // Every page was read once: a page read ahead is not read again when the scan reaches it.
    expect(new Set(store.reads).size).toBe(store.reads.length);
    await expectSameContent(tree, model);
  });

  it('a scan with a small limit reads nothing ahead; a bounded one nothing past its bound in the same parent', async () => {
    const { inner, root } = await flushed(512, 5000);
    const store = new SlowStore(inner);
    const tree = await BTree.open(store, root, { cacheSizeBytes: 1 << 20 });
    let n = 0;
    for await (const _ of tree.keys({ limit: 5 })) n++;
    expect(n).toBe(5);
    expect(tree.stats().readAhead).toBe(0);
    // Three leaves' worth of keys (about 30 entries of 16 bytes fit a 512-byte leaf): a few pages, not 32 ahead.
    const before = store.reads.length;
    for await (const _ of tree.keys({ gte: key4(3 * 100), lt: key4(3 * 190) })) n++;
    expect(n).toBe(5 + 90);
    expect(store.reads.length - before).toBeLessThanOrEqual(8);
    await tree.check();
  });

  it('pages read ahead that a flush replaced while they were read never reach the cache', async () => {
    const { inner, root, model } = await flushed(512, 3000);
    const store = new SlowStore(inner);
    // A small cache: the pages written below are evicted again, so a stale image could take their place.
    const tree = await BTree.open(store, root, { cacheSizeBytes: 64 * 512 });
    store.hold = true;
    const it = tree.entries()[Symbol.asyncIterator]();
    /** Resolves `p`, releasing the newest held read (the scan's own) whenever it waits. */
    const drive = async <T>(p: Promise<T>): Promise<T> => {
      let done = false;
      void p.then(
        () => (done = true),
        () => (done = true),
      );
      for (;;) {
        await new Promise((resolve) => setImmediate(resolve));
        if (done) return p;
        store.held.pop()?.release();
      }
    };
    // On until the scan has read pages ahead that it has not reached yet: their reads are held.
    for (let i = 0; i < 1000 && store.held.length < 4; i++) expect((await drive(it.next())).done).toBe(false);
    expect(tree.stats().readAhead).toBeGreaterThan(0);
    expect(store.held.length).toBeGreaterThanOrEqual(4);
    // Meanwhile the tree changes under them: most keys deleted and others stored (pages merge and split), a flush
    // replaces the pages, the replaced ones are freed and reused by the next changes, and those are flushed too.
    store.hold = false;
    // First a flush of a change behind the scan: after it, loads of the pages being read ahead do not wait for those
    // reads (the images may be stale now) but read them again.
    await tree.put(key4(1), val(1));
    model.set(hex(key4(1)), val(1));
    const zeroth = await tree.flush();
    for (const p of zeroth.freedPages) inner.free(p);
    for (let i = 200; i < 3000; i++) {
      await tree.delete(key4(i * 3));
      model.delete(hex(key4(i * 3)));
    }
    const first = await tree.flush();
    for (const p of first.freedPages) inner.free(p);
    for (let i = 0; i < 3000; i++) {
      await tree.put(key4(i * 3 + 1), val(i + 7, 20));
      model.set(hex(key4(i * 3 + 1)), val(i + 7, 20));
    }
    const second = await tree.flush();
    for (const p of second.freedPages) inner.free(p);
    // Reads of the whole tree evict the pages just written from the small cache: a stale image would no longer find
    // its page number cached.
    for (let i = 0; i < 3000; i++) await tree.get(key4(i * 3 + 1));
    // The held reads end now, with the images of before the flushes.
    for (const h of store.held.splice(0)) h.release();
    await new Promise((resolve) => setImmediate(resolve));
    for (const [k, v] of model) expect(await tree.get(Uint8Array.from(Buffer.from(k, 'hex')))).toEqual(v);
    await expectSameContent(tree, model);
    await it.return?.();
  });
});
