// Allocator benchmark: allocate+free pairs per second on a 1M-block map, empty and ~50% fragmented.
// Build first: npx tsc -b packages/allocator; run: npx pnpm@10.34.9 --filter @vde/allocator bench
import { BitmapAllocator } from '../dist/index.js';

const BLOCKS = 1 << 20;
const LIVE = 1024; // allocations kept alive; each step allocates one and frees the oldest
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function emptyMap() {
  return new BitmapAllocator(BLOCKS);
}

/** Every block allocated in extents of 1..32 blocks, then a random half of those extents freed. */
function fragmentedMap() {
  const a = new BitmapAllocator(BLOCKS);
  const rand = mulberry32(42);
  const toFree = [];
  for (let start = 0; start < BLOCKS; ) {
    const count = Math.min(1 + Math.floor(rand() * 32), BLOCKS - start);
    a.markAllocated([{ start, count }]);
    if (rand() < 0.5) toFree.push({ start, count });
    start += count;
  }
  a.free(toFree);
  return a;
}

function run(make, count) {
  const a = make();
  const freeAtStart = a.freeCount;
  const largestAtStart = a.largestFreeRun;
  const ring = [];
  let ops = 0;
  let extents = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const start = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 64; i++) {
      const got = a.allocate(count);
      extents += got.length;
      ring.push(got);
      if (ring.length > LIVE) a.free(ring.shift());
      ops++;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  a.check();
  return { freeAtStart, largestAtStart, opsPerSec: ops / seconds, extentsPerAlloc: extents / ops };
}

const rows = [];
for (const [name, make] of [['empty', emptyMap], ['~50% fragmented', fragmentedMap]]) {
  for (const count of [1, 256]) {
    const r = run(make, count);
    rows.push({
      map: `${name} (${(r.freeAtStart / BLOCKS * 100).toFixed(0)}% free, longest run ${r.largestAtStart})`,
      extent: `${count} block${count > 1 ? 's' : ''}`,
      'alloc+free /s': Math.round(r.opsPerSec).toLocaleString('en-US'),
      'extents per alloc': r.extentsPerAlloc.toFixed(2),
    });
  }
}
console.log(`BitmapAllocator, ${BLOCKS.toLocaleString('en-US')} blocks, ${LIVE} live allocations, Node ${process.version}`);
console.log('');
console.log('| map | extent | alloc+free /s | extents per alloc |');
console.log('|-----|--------|---------------|-------------------|');
for (const r of rows) console.log(`| ${r.map} | ${r.extent} | ${r['alloc+free /s']} | ${r['extents per alloc']} |`);
