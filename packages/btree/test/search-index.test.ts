import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BTree, MemoryPageStore } from '@vde/btree';
import { hex, type Model } from './helpers.js';

/*
 * Reads (get, getCachedView) search a page through a memory-only index of its keys (a shared prefix and a 4-byte
 * fingerprint per key), built at the second read of a page version. These tests read every key (and keys next
 * to them) several times between mutations, so the indexes are built, and check that no read after a split,
 * merge, overwrite, delete, flush or reopen ever answers from a stale index.
 */
const LONG = process.env.VDE_LONG !== undefined && process.env.VDE_LONG !== '';

type Op =
  | { t: 'put'; k: Uint8Array; vlen: number; vbyte: number }
  | { t: 'del'; k: Uint8Array }
  | { t: 'cachedPut'; k: Uint8Array; vlen: number; vbyte: number }
  | { t: 'cachedDel'; k: Uint8Array }
  | { t: 'fill'; prefix: Uint8Array; n: number; stride: number; vlen: number }
  | { t: 'flush' }
  | { t: 'reopen' }
  | { t: 'probe'; extra: Uint8Array[] }
  | { t: 'swap'; del: Uint8Array; put: Uint8Array; vlen: number };

// Few distinct bytes (0x00, 0x01, 0x7f, 0x80, 0xff), so that keys share prefixes, one key is a prefix of another,
// trailing zero bytes make equal fingerprints, and the fingerprint's flipped top bit is exercised both ways.
const byte = fc.constantFrom(0, 1, 0x7f, 0x80, 0xff);
const shortKey = fc.array(byte, { minLength: 0, maxLength: 9 }).map((a) => Uint8Array.from(a));
const prefixed = fc
  .tuple(fc.constantFrom(Uint8Array.of(0x61, 0x62), Uint8Array.of(0x61, 0x62, 0x63, 0x64, 0x65)), shortKey)
  .map(([p, s]) => Uint8Array.from([...p, ...s]));
const key = fc.oneof(shortKey, prefixed);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ t: fc.constant('put' as const), k: key, vlen: fc.nat(60), vbyte: fc.nat(255) }) },
  { weight: 10, arbitrary: fc.record({ t: fc.constant('del' as const), k: key }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('cachedPut' as const), k: key, vlen: fc.nat(60), vbyte: fc.nat(255) }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('cachedDel' as const), k: key }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('fill' as const),
      prefix: key,
      n: fc.integer({ min: 1, max: 120 }),
      stride: fc.integer({ min: 1, max: 300 }),
      vlen: fc.nat(40),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('flush' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
  { weight: 12, arbitrary: fc.record({ t: fc.constant('probe' as const), extra: fc.array(key, { maxLength: 8 }) }) },
  // A delete and a put with no read in between: the page's entry count is back where it was, its keys are not.
  { weight: 8, arbitrary: fc.record({ t: fc.constant('swap' as const), del: key, put: key, vlen: fc.nat(40) }) },
);

const value = (len: number, b: number): Uint8Array => new Uint8Array(len).fill(b);

/** Keys around `k`: itself, its prefixes, extensions with 0x00 / 0xff, and its last byte moved by one. */
function neighbours(k: Uint8Array): Uint8Array[] {
  const out = [k, k.subarray(0, k.length - 1), Uint8Array.from([...k, 0]), Uint8Array.from([...k, 0, 0, 0, 0, 1]), Uint8Array.from([...k, 0xff])];
  if (k.length > 0) {
    const last = k[k.length - 1]!;
    if (last > 0) out.push(Uint8Array.from([...k.subarray(0, k.length - 1), last - 1]));
    if (last < 255) out.push(Uint8Array.from([...k.subarray(0, k.length - 1), last + 1]));
  }
  return out;
}

async function run(pageSize: number, ops: Op[]): Promise<void> {
  const store = new MemoryPageStore(pageSize);
  const opts = { cacheSizeBytes: 1 << 24 };
  let tree = BTree.create(store, opts);
  const model: Model = new Map();
  const expected = (k: Uint8Array): string | undefined => {
    const v = model.get(hex(k));
    return v === undefined ? undefined : hex(v);
  };
  const h = (v: Uint8Array | null | undefined): string | undefined => (v === undefined || v === null ? undefined : hex(v));
  /**
   * Reads each key three times through getCachedView (the second builds the index, the third uses it), once
   * through getCachedView(k, true) (uses a valid index, never builds one) and once through get.
   */
  const probe = async (keys: Uint8Array[]): Promise<void> => {
    for (const k of keys) {
      for (let i = 0; i < 4; i++) {
        const v = tree.getCachedView(k, i === 0);
        if (v !== undefined) expect(h(v), `view of ${hex(k)}`).toBe(expected(k));
      }
      expect(h(await tree.get(k)), `get of ${hex(k)}`).toBe(expected(k));
    }
  };
  const modelKeys = (): Uint8Array[] => [...model.keys()].map((k) => Buffer.from(k, 'hex'));
  for (const op of ops) {
    switch (op.t) {
      case 'put': {
        const v = value(op.vlen, op.vbyte);
        expect(h(await tree.put(op.k, v))).toBe(expected(op.k));
        model.set(hex(op.k), v);
        break;
      }
      case 'del':
        expect(h(await tree.delete(op.k))).toBe(expected(op.k));
        model.delete(hex(op.k));
        break;
      case 'cachedPut':
      case 'cachedDel': {
        const v = op.t === 'cachedPut' ? value(op.vlen, op.vbyte) : null;
        for (let tries = 0; ; tries++) {
          const r = v !== null ? tree.putCached(op.k, v) : tree.deleteCached(op.k);
          if (r.done) {
            expect(h(r.previous)).toBe(expected(op.k));
            break;
          }
          expect(tries).toBeLessThan(5);
          await tree.prefetch(op.k);
        }
        if (v !== null) model.set(hex(op.k), v);
        else model.delete(hex(op.k));
        break;
      }
      case 'fill':
        for (let i = 0; i < op.n; i++) {
          const j = i * op.stride;
          const k = Uint8Array.from([...op.prefix, j >> 8, j & 0xff]);
          const v = value(op.vlen, i & 0xff);
          expect(h(await tree.put(k, v))).toBe(expected(k));
          model.set(hex(k), v);
        }
        break;
      case 'flush': {
        const { freedPages } = await tree.flush();
        for (const p of freedPages) store.free(p);
        break;
      }
      case 'reopen': {
        const { root, freedPages } = await tree.flush();
        for (const p of freedPages) store.free(p);
        tree = await BTree.open(store, root, opts);
        break;
      }
      case 'swap': {
        // The deleted key is usually an existing one (the op's key if present, else the model's first).
        const first = model.keys().next();
        const d = model.has(hex(op.del)) || first.done === true ? op.del : Buffer.from(first.value, 'hex');
        expect(h(await tree.delete(d))).toBe(expected(d));
        model.delete(hex(d));
        const v = value(op.vlen, 7);
        expect(h(await tree.put(op.put, v))).toBe(expected(op.put));
        model.set(hex(op.put), v);
        break;
      }
      case 'probe':
        await probe([...op.extra.flatMap(neighbours), ...modelKeys().slice(0, 50).flatMap(neighbours)]);
        break;
    }
    // Every key of the model, read right after each operation (indexes built by earlier probes must be dropped).
    await probe(modelKeys());
  }
  await tree.check();
}

describe('search index of pages (reads)', () => {
  it('answers like a plain search for keys that are prefixes of each other and have equal fingerprints', async () => {
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 1 << 20 });
    const keys = [
      [],
      [0x61],
      [0x61, 0x62],
      [0x61, 0x62, 0],
      [0x61, 0x62, 0, 0, 0],
      [0x61, 0x62, 0, 0, 0, 0, 1],
      [0x61, 0x62, 0, 0, 0, 1],
      [0x61, 0x62, 0x7f, 0xff, 0xff, 0xff, 0xff],
      [0x61, 0x62, 0x80],
      [0x61, 0x62, 0x80, 0, 0, 0, 0],
      [0x61, 0x62, 0xff, 0xff, 0xff, 0xff],
      [0x61, 0x62, 0xff, 0xff, 0xff, 0xff, 0],
      [0x61, 0x63],
      [0xff],
    ].map((a) => Uint8Array.from(a));
    const present = keys.filter((_, i) => i % 2 === 1);
    for (const k of present) await tree.put(k, k);
    for (let round = 0; round < 3; round++) {
      for (const k of keys.flatMap(neighbours)) {
        const want = present.some((p) => hex(p) === hex(k)) ? hex(k) : undefined;
        const v = tree.getCachedView(k);
        expect(v === null || v === undefined ? undefined : hex(v), hex(k)).toBe(want);
      }
    }
  });

  it('remembered child pages never keep evicted pages alive (check() verifies it)', async () => {
    const store = new MemoryPageStore(512);
    const tree = BTree.create(store, { cacheSizeBytes: 12 * 512 });
    const key = (i: number): Uint8Array => Uint8Array.of(0x6b, (i >> 8) & 0xff, i & 0xff);
    for (let i = 0; i < 3000; i++) await tree.put(key(i * 7 % 3000), Uint8Array.of(i & 0xff, 1, 2, 3));
    const { freedPages } = await tree.flush();
    for (const p of freedPages) store.free(p);
    // Reads through getCachedView fill the branches' remembered children; get() loads pages and evicts others.
    let viewed = 0;
    for (let r = 0; r < 3; r++) {
      for (let i = 0; i < 3000; i += 1 + r) {
        const k = key((i * 37) % 3000);
        expect(await tree.get(k)).toBeDefined();
        for (let j = 0; j < 3; j++) if (tree.getCachedView(k) !== undefined) viewed++;
      }
    }
    expect(viewed).toBeGreaterThan(1000);
    expect(tree.stats().evictions).toBeGreaterThan(100);
    await tree.check();
  });

  describe.each([
    { pageSize: 512, maxOps: 40, runs: LONG ? 600 : 60 },
    { pageSize: 4096, maxOps: 30, runs: LONG ? 200 : 15 },
  ])('model, pageSize $pageSize', ({ pageSize, maxOps, runs }) => {
    it('never answers from a stale index after splits, merges, overwrites, deletes, flushes and reopens', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: maxOps }), async (ops) => run(pageSize, ops)),
        { numRuns: runs },
      );
    }, LONG ? 3_600_000 : 60_000);
  });
});
