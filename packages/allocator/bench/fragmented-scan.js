// Benchmark (not a test): allocate(2) per call when free space is many 1-block holes plus one large free run
// (the holes come first, so every search from the cursor passes them). Side by side with an older build if
// BASELINE points at its dist/index.js. Build first: npx tsc -b packages/allocator; run:
//   [BASELINE=/path/to/old/packages/allocator/dist/index.js] node packages/allocator/bench/fragmented-scan.js
import { BitmapAllocator } from '../dist/index.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const HOLES = [50_000, 200_000, 800_000];
const TAIL = 100_000;

const impls = [['after', BitmapAllocator]];
if (process.env.BASELINE) {
  const old = await import(new URL(process.env.BASELINE, `file://${process.cwd()}/`).href);
  impls.unshift(['before', old.BitmapAllocator]);
}

/** Blocks [0, 2 * holes) alternate free/used (block 2k free), then TAIL free blocks. */
function holeyMap(Alloc, holes) {
  const a = new Alloc(2 * holes + TAIL);
  a.allocate(2 * holes, { contiguous: true });
  const free = [];
  for (let b = 0; b < 2 * holes; b += 2) free.push({ start: b, count: 1 });
  a.free(free);
  return a;
}

/** Mean µs per allocate(count) over CALLS calls on a fresh map (the first call included, as a caller sees it). */
function measure(Alloc, holes, count) {
  const a = holeyMap(Alloc, holes);
  const t = performance.now();
  for (let i = 0; i < CALLS; i++) a.allocate(count);
  const us = ((performance.now() - t) / CALLS) * 1000;
  a.check();
  return us;
}

// Best of ROUNDS (the machine is shared), the implementations interleaved within each round.
const best = new Map();
for (let r = 0; r < ROUNDS; r++) {
  for (const holes of HOLES) {
    for (const [name, Alloc] of impls) {
      for (const count of [1, 2]) {
        const key = `${name} ${holes} ${count}`;
        best.set(key, Math.min(best.get(key) ?? Infinity, measure(Alloc, holes, count)));
      }
    }
  }
}
const fmt = (us) => (us >= 100 ? us.toFixed(0) : us.toFixed(1));
console.log(`allocate() per call, ${CALLS} calls on a fresh map, best of ${ROUNDS}, Node ${process.version}`);
console.log('');
console.log(`| 1-block holes | ${impls.map(([n]) => `allocate(2) ${n}`).join(' | ')} | ${impls.map(([n]) => `allocate(1) ${n}`).join(' | ')} |`);
console.log(`|---${'|---'.repeat(2 * impls.length)}|`);
for (const holes of HOLES) {
  const two = impls.map(([n]) => `${fmt(best.get(`${n} ${holes} 2`))} µs`);
  const one = impls.map(([n]) => `${fmt(best.get(`${n} ${holes} 1`))} µs`);
  console.log(`| ${holes.toLocaleString('en-US')} | ${two.join(' | ')} | ${one.join(' | ')} |`);
}
