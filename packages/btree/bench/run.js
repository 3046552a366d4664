// Benchmark of @vde/btree alone: MemoryPageStore, 4 KiB pages, 64 MiB page cache, 16-byte keys, 32-byte values.
// Build first: npx tsc -b packages/btree. Run: npx pnpm@10.34.9 --filter @vde/btree bench [-- options counts...]
// Keys are derived from a Uint32Array (4 bytes per key), so the benchmark's own data barely shows in the heap.
// Options: --writes (only the engine-shaped write workload), --rounds=N (repeat that workload N times, default 3),
// --dist=DIR (benchmark another build of the package, e.g. a copy of dist/ made before a change).
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

const args = process.argv.slice(2);
const opt = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const distDir = opt('dist');
const { BTree, MemoryPageStore } = await import(
  distDir === undefined ? '../dist/index.js' : pathToFileURL(path.resolve(distDir, 'index.js')).href
);

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const PAGE_SIZE = 4096;
const CACHE_BYTES = 64 * 1024 * 1024;
const sizes = args.filter((a) => !a.startsWith('--')).map(Number).filter((n) => n > 0);
const writesOnly = args.includes('--writes');
const rounds = Number(opt('rounds') ?? 3);
const counts = sizes.length > 0 ? sizes : [100_000, 1_000_000];
const value = new Uint8Array(32).fill(7);

/** Distinct pseudo-random u32 values: a bijection of i (odd multiply, xor-shift). */
function randomIds(n) {
  const ids = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    let x = Math.imul(i + 1, 0x9e3779b1) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
    ids[i] = Math.imul(x, 0x85ebca6b) >>> 0;
  }
  return ids;
}

/** 16-byte key: the id big-endian, then 12 bytes derived from it (so keys order like their ids). */
function keyOf(id) {
  const k = new Uint8Array(16);
  k[0] = id >>> 24;
  k[1] = id >>> 16;
  k[2] = id >>> 8;
  k[3] = id;
  let h = id;
  for (let j = 4; j < 16; j += 4) {
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    k[j] = h >>> 24;
    k[j + 1] = h >>> 16;
    k[j + 2] = h >>> 8;
    k[j + 3] = h;
  }
  return k;
}

function* sortedEntries(ids) {
  const sorted = ids.slice().sort();
  for (let i = 0; i < sorted.length; i++) yield [keyOf(sorted[i]), value];
}

let seed = 99;
const pick = (n) => {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
};
const rate = (n, ms) => Math.round((n / ms) * 1000);
const mib = (b) => (b / 1048576).toFixed(0);
async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function measure(n) {
  const ids = randomIds(n);
  // Random inserts, flush, then random gets and a full scan.
  let tree = BTree.create(new MemoryPageStore(PAGE_SIZE), { cacheSizeBytes: CACHE_BYTES });
  const tRand = await timed(async () => {
    for (let i = 0; i < n; i++) await tree.put(keyOf(ids[i]), value);
  });
  const tFlush = await timed(() => tree.flush());
  const tGet = await timed(async () => {
    for (let i = 0; i < n; i++) if ((await tree.get(keyOf(ids[pick(n)]))) === undefined) throw new Error('missing');
  });
  let scanned = 0;
  const tScan = await timed(async () => {
    for await (const e of tree.entries()) scanned += e.length >> 1;
  });
  if (scanned !== n) throw new Error(`scanned ${scanned} of ${n}`);
  const randomStats = tree.stats();
  gc();
  const memRandom = process.memoryUsage();
  tree = null;
  gc();
  // Sequential inserts.
  tree = BTree.create(new MemoryPageStore(PAGE_SIZE), { cacheSizeBytes: CACHE_BYTES });
  const tSeq = await timed(async () => {
    for (let i = 0; i < n; i++) await tree.put(keyOf(i), value);
  });
  tree = null;
  gc();
  // Bulk load of the same keys (sorted), then gets and a scan on the packed tree.
  tree = BTree.create(new MemoryPageStore(PAGE_SIZE), { cacheSizeBytes: CACHE_BYTES });
  const tBulk = await timed(async () => {
    await tree.bulkLoad(sortedEntries(ids));
    await tree.flush();
  });
  const tGetBulk = await timed(async () => {
    for (let i = 0; i < n; i++) if ((await tree.get(keyOf(ids[pick(n)]))) === undefined) throw new Error('missing');
  });
  let scanned2 = 0;
  const tScanBulk = await timed(async () => {
    for await (const e of tree.entries()) scanned2 += e.length >> 1;
  });
  if (scanned2 !== n) throw new Error(`scanned ${scanned2} of ${n}`);
  const mem = process.memoryUsage();
  return {
    keys: n.toLocaleString('en-US'),
    'insert/s rand': rate(n, tRand),
    'insert/s seq': rate(n, tSeq),
    'flush ms': Math.round(tFlush),
    'bulkLoad/s': rate(n, tBulk),
    'get/s': rate(n, tGet),
    'get/s bulk': rate(n, tGetBulk),
    'scan/s': rate(n, tScan),
    'scan/s bulk': rate(n, tScanBulk),
    'pages rand/bulk': `${randomStats.pages}/${tree.stats().pages}`,
    'hit %': ((100 * randomStats.hits) / (randomStats.hits + randomStats.misses)).toFixed(1),
    // Memory while the random-insert tree (and its MemoryPageStore) is alive; page buffers are ArrayBuffers.
    'heap MiB': mib(memRandom.heapUsed),
    'arrayBuf MiB': mib(memRandom.arrayBuffers),
    'rss MiB': mib(Math.max(memRandom.rss, mem.rss)),
  };
}

/*
 * The engine's write path: every object's record goes into the tree through putCached (prefetch only when a page
 * is missing). Sequential keys 'w3/000000001', ... with 100-byte values (a bulk load of small objects), and random
 * keys with 1 KiB values (about three entries per leaf: nearly every insert splits a leaf).
 */
const enc = new TextEncoder();
const engineKey = (i) => enc.encode(`w3/${String(i).padStart(9, '0')}`);

async function putAll(tree, keys, v) {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    while (!tree.putCached(k, v).done) await tree.prefetch(k);
  }
}

async function measureWrites(nSeq, nRand) {
  const seqKeys = [];
  for (let i = 1; i <= nSeq; i++) seqKeys.push(engineKey(i));
  const ids = randomIds(nRand);
  const randKeys = [];
  for (let i = 0; i < nRand; i++) randKeys.push(engineKey(ids[i] % 1_000_000_000));
  const small = new Uint8Array(100).fill(5);
  const large = new Uint8Array(1024).fill(6);
  const out = {};
  for (const [name, keys, v] of [
    ['seq 100 B', seqKeys, small],
    ['rand 1 KiB', randKeys, large],
  ]) {
    gc();
    const tree = BTree.create(new MemoryPageStore(PAGE_SIZE), { cacheSizeBytes: CACHE_BYTES });
    const t = await timed(() => putAll(tree, keys, v));
    const tf = await timed(() => tree.flush());
    await tree.check(); // also makes stats().pages exact
    out[`${name} insert/s`] = rate(keys.length, t);
    out[`${name} flush ms`] = Math.round(tf);
    out[`${name} pages`] = tree.stats().pages;
  }
  return out;
}

if (writesOnly) {
  await measureWrites(20_000, 2_000); // warm-up
  const rows = [];
  for (let r = 0; r < rounds; r++) rows.push(await measureWrites(200_000, 20_000));
  console.log(
    `@vde/btree ${PAGE_SIZE}-byte pages, ${mib(CACHE_BYTES)} MiB cache, putCached: 200,000 sequential 'w3/%09d' keys with 100 B values, 20,000 random keys with 1 KiB values${distDir === undefined ? '' : `, dist ${distDir}`}, node ${process.version}`,
  );
  console.table(rows);
  process.exit(0);
}

await measure(20_000); // warm-up: let the JIT optimize every path before measuring
const rows = [];
for (const n of counts) {
  gc();
  rows.push(await measure(n));
}
console.log(
  `@vde/btree ${PAGE_SIZE}-byte pages, ${mib(CACHE_BYTES)} MiB cache, MemoryPageStore, 16-byte keys, 32-byte values, node ${process.version}`,
);
console.table(rows);
const writes = [];
for (let r = 0; r < rounds; r++) writes.push(await measureWrites(200_000, 20_000));
console.log(`putCached: 200,000 sequential 'w3/%09d' keys with 100 B values, 20,000 random keys with 1 KiB values`);
console.table(writes);
