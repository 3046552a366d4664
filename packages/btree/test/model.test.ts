import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BTree, type KeyRange, MemoryPageStore } from '@vde/btree';
import { batchesOf, expectSameContent, hex, type Model, modelRange, treeRange } from './helpers.js';

/*
 * Model test: random operations against a sorted Map (keys as hex strings), under several page sizes and a
 * cache of only a few pages, so that every operation loads and evicts pages. Each run ends with check().
 * Operations: numRuns x up to maxOps (uniform length) per page size: about 5k in CI, about 110k with VDE_LONG=1
 * (each "fill" and "run" op adds up to maxFill puts on top).
 */
const LONG = process.env.VDE_LONG !== undefined && process.env.VDE_LONG !== '';

type Op =
  | { t: 'put'; k: Uint8Array; vlen: number; vbyte: number }
  | { t: 'del'; k: Uint8Array }
  | { t: 'get'; k: Uint8Array }
  | { t: 'range'; a: Uint8Array; b: Uint8Array; kinds: number; reverse: boolean; limit: number }
  | { t: 'count'; a: Uint8Array; b: Uint8Array; kinds: number; reverse: boolean; limit: number }
  | { t: 'flush' }
  | { t: 'reopen' }
  | { t: 'cachedPut'; k: Uint8Array; vlen: number; vbyte: number; noise: Uint8Array[] }
  | { t: 'cachedDel'; k: Uint8Array; noise: Uint8Array[] }
  | { t: 'parallel'; ks: Uint8Array[]; vlen: number }
  | { t: 'fill'; n: number; tag: number; vlen: number; stride: number }
  | { t: 'delMany'; a: Uint8Array; b: Uint8Array; kinds: number; reverse: boolean; limit: number }
  | { t: 'run'; n: number; tag: number; vlen: number; descending: boolean; cached: boolean; start: number; edge: boolean }
  | { t: 'view'; k: Uint8Array }
  | { t: 'batches'; a: Uint8Array; b: Uint8Array; kinds: number; reverse: boolean; limit: number; mutate: boolean; runs: boolean }
  | { t: 'check' };

function opArb(maxKey: number, maxValue: number, maxFill: number): fc.Arbitrary<Op> {
  // Small alphabet so that keys collide, share prefixes and include 0x00 / 0xff edges.
  const shortKey = fc.uint8Array({ minLength: 0, maxLength: 5 }).map((a) => a.map((x) => [0, 1, 2, 0x7f, 0xff][x % 5]!));
  const longKey = fc
    .tuple(fc.integer({ min: 1, max: maxKey }), fc.integer({ min: 0, max: 3 }))
    .map(([n, b]) => new Uint8Array(n).fill(b));
  const key = fc.oneof({ weight: 6, arbitrary: shortKey }, { weight: 1, arbitrary: longKey });
  const vlen = fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: 0, max: Math.min(40, maxValue) }) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: maxValue }) },
  );
  const range = { a: key, b: key, kinds: fc.nat(63), reverse: fc.boolean(), limit: fc.integer({ min: -1, max: 30 }) };
  return fc.oneof(
    { weight: 30, arbitrary: fc.record({ t: fc.constant('put' as const), k: key, vlen, vbyte: fc.nat(255) }) },
    { weight: 18, arbitrary: fc.record({ t: fc.constant('del' as const), k: key }) },
    { weight: 10, arbitrary: fc.record({ t: fc.constant('get' as const), k: key }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('range' as const), ...range }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('count' as const), ...range }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('flush' as const) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
    {
      weight: 6,
      arbitrary: fc.record({ t: fc.constant('cachedPut' as const), k: key, vlen, vbyte: fc.nat(255), noise: fc.array(key, { maxLength: 4 }) }),
    },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('cachedDel' as const), k: key, noise: fc.array(key, { maxLength: 4 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('parallel' as const), ks: fc.array(key, { maxLength: 6 }), vlen }) },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('fill' as const),
        n: fc.integer({ min: 1, max: maxFill }),
        tag: fc.nat(3),
        vlen,
        stride: fc.integer({ min: 1, max: 7 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('delMany' as const), ...range }) },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('run' as const),
        n: fc.integer({ min: 1, max: maxFill }),
        tag: fc.nat(3),
        vlen,
        descending: fc.boolean(),
        cached: fc.boolean(),
        start: fc.nat(0xffff),
        edge: fc.boolean(),
      }),
    },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('view' as const), k: key }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('batches' as const), ...range, mutate: fc.boolean(), runs: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('check' as const) }) },
  );
}

/** Bits of `kinds` choose which bounds to use: gt/gte from a, lt/lte from b, prefix from a. */
function makeRange(op: { a: Uint8Array; b: Uint8Array; kinds: number; reverse: boolean; limit: number }): KeyRange {
  const r: KeyRange = { reverse: op.reverse, limit: op.limit };
  if (op.kinds & 1) r.gt = op.a;
  if (op.kinds & 2) r.gte = op.a;
  if (op.kinds & 4) r.lt = op.b;
  if (op.kinds & 8) r.lte = op.b;
  if ((op.kinds & 48) === 48) r.prefix = op.a.subarray(0, 2);
  if (op.limit < 0 && op.kinds & 16) delete r.limit;
  return r;
}

const value = (len: number, b: number): Uint8Array => new Uint8Array(len).fill(b);

async function run(pageSize: number, cachePages: number, ops: Op[]): Promise<void> {
  const store = new MemoryPageStore(pageSize);
  const opts = { cacheSizeBytes: cachePages * pageSize };
  let tree = BTree.create(store, opts);
  const model: Model = new Map();
  const prev = (k: Uint8Array): string | undefined => {
    const v = model.get(hex(k));
    return v === undefined ? undefined : hex(v);
  };
  const h = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : hex(v));
  for (const op of ops) {
    switch (op.t) {
      case 'put': {
        const v = value(op.vlen, op.vbyte);
        expect(h(await tree.put(op.k, v))).toBe(prev(op.k));
        model.set(hex(op.k), v);
        break;
      }
      case 'del':
        expect(h(await tree.delete(op.k))).toBe(prev(op.k));
        model.delete(hex(op.k));
        break;
      case 'get':
        expect(h(await tree.get(op.k))).toBe(prev(op.k));
        break;
      case 'range': {
        const r = makeRange(op);
        expect(await treeRange(tree, r)).toEqual(modelRange(model, r));
        break;
      }
      case 'count': {
        const r = makeRange(op);
        expect(await tree.count(r)).toBe(modelRange(model, r).length);
        break;
      }
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
      case 'cachedPut':
      case 'cachedDel': {
        const v = op.t === 'cachedPut' ? value(op.vlen, op.vbyte) : null;
        let tries = 0;
        for (;;) {
          await tree.prefetch(op.k);
          // Other readers in between: they load pages and evict unpinned ones.
          for (const n of op.noise) await tree.get(n);
          const r = v !== null ? tree.putCached(op.k, v) : tree.deleteCached(op.k);
          if (r.done) {
            expect(h(r.previous)).toBe(prev(op.k));
            break;
          }
          expect(++tries).toBeLessThan(10);
        }
        if (v !== null) model.set(hex(op.k), v);
        else model.delete(hex(op.k));
        break;
      }
      case 'fill': {
        // Many keys with a common prefix: grows the tree several levels deep.
        for (let i = 0; i < op.n; i++) {
          const j = i * op.stride;
          const k = Uint8Array.of(1, op.tag, (j >> 8) & 0xff, j & 0xff);
          const v = value(op.vlen, i & 0xff);
          expect(h(await tree.put(k, v))).toBe(prev(k));
          model.set(hex(k), v);
        }
        break;
      }
      case 'run': {
        // Consecutive keys, ascending or descending: among the other keys (first byte 1, between the short keys'
        // 0x01 and 0x02), or after every other key (six 0xff bytes first: on the right edge of the tree). Exercises
        // the append split, run-aware splits and in-place separator inserts. Through put, or through putCached as
        // the engine does.
        for (let i = 0; i < op.n; i++) {
          const j = (op.start + (op.descending ? op.n - 1 - i : i)) & 0xffff;
          const k = op.edge
            ? Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, op.tag, j >> 8, j & 0xff)
            : Uint8Array.of(1, 0x10 + op.tag, j >> 8, j & 0xff);
          const v = value(op.vlen, i & 0xff);
          if (op.cached) {
            for (;;) {
              const r = tree.putCached(k, v);
              if (r.done) {
                expect(h(r.previous)).toBe(prev(k));
                break;
              }
              await tree.prefetch(k);
            }
          } else {
            expect(h(await tree.put(k, v))).toBe(prev(k));
          }
          model.set(hex(k), v);
        }
        break;
      }
      case 'view': {
        const v = tree.getCachedView(op.k);
        if (v !== undefined) expect(v === null ? undefined : hex(v)).toBe(prev(op.k));
        // After a get() the path is cached (a cache of a few pages still holds one path right after).
        expect(h(await tree.get(op.k))).toBe(prev(op.k));
        const again = tree.getCachedView(op.k);
        if (again !== undefined) expect(again === null ? undefined : hex(again)).toBe(prev(op.k));
        break;
      }
      case 'batches': {
        const r = makeRange(op);
        const expected = modelRange(model, r);
        if (!op.mutate) {
          const got: [string, string][] = [];
          for await (const { keys, values } of batchesOf(tree, r, op.runs)) {
            expect(keys.length).toBeGreaterThan(0);
            expect(values.length).toBe(keys.length);
            keys.forEach((k, i) => got.push([hex(k), hex(values[i]!)]));
          }
          expect(got).toEqual(expected);
        } else {
          // Delete each batch's last key while holding the batch: the next batch continues after it.
          const seen: string[] = [];
          for await (const { keys } of batchesOf(tree, r, op.runs)) {
            for (const k of keys) seen.push(hex(k));
            const last = keys[keys.length - 1]!;
            const lastHex = hex(last);
            expect(h(await tree.delete(last.slice()))).toBe(prev(last));
            model.delete(lastHex);
          }
          // In order, no duplicates, and every key of the range that was not deleted was seen.
          const sorted = [...seen].sort();
          if (op.reverse) sorted.reverse();
          expect(seen).toEqual(sorted);
          expect(new Set(seen).size).toBe(seen.length);
          if (r.limit === undefined || r.limit < 0) expect(seen).toEqual(expected.map(([k]) => k));
        }
        break;
      }
      case 'check':
        await tree.check();
        break;
      case 'delMany': {
        // Deleting a whole range empties many pages: merges, borrows and root collapses.
        const r = makeRange(op);
        for (const [k, v] of modelRange(model, r)) {
          expect(h(await tree.delete(Buffer.from(k, 'hex')))).toBe(v);
          model.delete(k);
        }
        break;
      }
      case 'parallel': {
        // Distinct keys at once (the engine serializes per key): puts and deletes interleave at their awaits.
        const distinct = [...new Map(op.ks.map((k) => [hex(k), k])).values()];
        const expected = distinct.map((k) => prev(k));
        const results = await Promise.all(
          distinct.map((k, i) => (i % 3 === 2 ? tree.delete(k) : tree.put(k, value(op.vlen, i)))),
        );
        expect(results.map(h)).toEqual(expected);
        distinct.forEach((k, i) => {
          if (i % 3 === 2) model.delete(hex(k));
          else model.set(hex(k), value(op.vlen, i));
        });
        break;
      }
    }
  }
  await expectSameContent(tree, model);
  const { root, freedPages } = await tree.flush();
  for (const p of freedPages) store.free(p);
  const reopened = await BTree.open(store, root, { ...opts, readOnly: true });
  await expectSameContent(reopened, model);
}

describe.each([
  { pageSize: 512, cachePages: 2, maxOps: 150, maxFill: 300, runs: LONG ? 800 : 40 },
  { pageSize: 4096, cachePages: 1, maxOps: 150, maxFill: 600, runs: LONG ? 500 : 25 },
  { pageSize: 65536, cachePages: 3, maxOps: 100, maxFill: 200, runs: LONG ? 200 : 8 },
])('model test, pageSize $pageSize, cache of $cachePages pages', ({ pageSize, cachePages, maxOps, maxFill, runs }) => {
  it('matches a sorted Map under random operations', async () => {
    const probe = BTree.create(new MemoryPageStore(pageSize));
    await probe.check();
    const arb = fc.array(opArb(probe.maxKeyBytes, probe.maxValueBytes, maxFill), { minLength: 1, maxLength: maxOps, size: 'max' });
    await fc.assert(
      fc.asyncProperty(arb, async (ops) => run(pageSize, cachePages, ops)),
      { numRuns: runs },
    );
  }, LONG ? 3_600_000 : 60_000);
});
