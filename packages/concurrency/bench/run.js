// Benchmark of @vde/concurrency against async-mutex and async-lock, in the same process, side by side.
// Build first: `npx tsc -b packages/concurrency`, then `npx pnpm@10.34.9 --filter @vde/concurrency bench`.
// (`bench` runs `node --expose-gc bench/run.js`; BENCH_MS and BENCH_ROUNDS tune it.)
//
// Scenarios (each library does exactly the same work):
// - uncontended: one caller, `acquire` then `release`, in a loop, over 1,024 rotating keys.
// - 64 workers: 64 concurrent loops, worker i always on key `worker-${i}`; each holds its lock across ONE
//   `await Promise.resolve()` (a microtask, no event-loop turn) and then releases.
// async-mutex gets 64 `Mutex`es indexed by the same FNV-1a mapping as StripedWriteLock(64), so stripe collisions
// between the 64 keys hit both alike (the 64 worker keys fall on 42 distinct stripes of 64); async-lock is keyed by
// the key itself (no collisions at all). The 1024-stripe row gives both striped locks 1024 stripes (64 distinct).
//
// Method (the machine is shared and noisy, so every number is relative to a neighbour in time): each scenario runs
// every library twice to warm up, then ROUNDS rounds; a round measures each library for MS ms, in an order that
// rotates from round to round (nobody always runs right after the same library), with a full GC before each
// measurement when `gc` is exposed (nobody pays for the previous library's garbage). The table shows each library's
// median ops/s and, for the ratios, the median over rounds of the ratio measured within the round; the line under
// the table lists every round's ratio to async-lock.
import { Mutex } from 'async-mutex';
import AsyncLock from 'async-lock';
import { StripedWriteLock, fnv1a32 } from '../dist/index.js';

const MS = Number(process.env.BENCH_MS ?? 300); // measuring time per library, scenario and round
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9); // the table shows medians over the rounds
const WORKERS = 64;
const KEYS = Array.from({ length: 1024 }, (_, i) => `object/${i}`);

/** @param {() => Promise<number>} once runs for about MS and returns the operations done */
async function measure(once) {
  globalThis.gc?.();
  const start = performance.now();
  const ops = await once();
  return (ops * 1000) / (performance.now() - start);
}

// ---- uncontended ----
/** @returns {Promise<number>} */
async function uncontendedVde() {
  const lock = new StripedWriteLock(64);
  const end = performance.now() + MS;
  let ops = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 1024; i++) {
      const region = await lock.acquire(KEYS[i]);
      region.release();
    }
    ops += 1024;
  }
  return ops;
}

async function uncontendedMutex() {
  const mutexes = Array.from({ length: 64 }, () => new Mutex());
  const end = performance.now() + MS;
  let ops = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 1024; i++) {
      const release = await mutexes[fnv1a32(KEYS[i]) & 63].acquire();
      release();
    }
    ops += 1024;
  }
  return ops;
}

async function uncontendedAsyncLock() {
  const lock = new AsyncLock();
  const end = performance.now() + MS;
  let ops = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 1024; i++) {
      await lock.acquire(KEYS[i], () => undefined);
    }
    ops += 1024;
  }
  return ops;
}

// ---- 64 workers on distinct keys ----
async function workers(body) {
  const end = performance.now() + MS;
  let ops = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      const key = `worker-${w}`;
      while (performance.now() < end) {
        for (let i = 0; i < 64; i++) await body(key);
        ops += 64;
      }
    }),
  );
  return ops;
}

function workersVde(stripes) {
  const lock = new StripedWriteLock(stripes);
  return workers(async (key) => {
    const region = await lock.acquire(key);
    await Promise.resolve();
    region.release();
  });
}

function workersMutex(stripes) {
  const mutexes = Array.from({ length: stripes }, () => new Mutex());
  return workers(async (key) => {
    const release = await mutexes[fnv1a32(key) & (stripes - 1)].acquire();
    await Promise.resolve();
    release();
  });
}

function workersAsyncLock() {
  const lock = new AsyncLock();
  return workers((key) => lock.acquire(key, async () => {
    await Promise.resolve();
  }));
}

const scenarios = [
  ['uncontended acquire+release', [['@vde/concurrency', uncontendedVde], ['async-mutex', uncontendedMutex], ['async-lock', uncontendedAsyncLock]]],
  ['64 workers, distinct keys, 64 stripes', [['@vde/concurrency', () => workersVde(64)], ['async-mutex', () => workersMutex(64)], ['async-lock', workersAsyncLock]]],
  ['64 workers, distinct keys, 1024 stripes', [['@vde/concurrency', () => workersVde(1024)], ['async-mutex', () => workersMutex(1024)], ['async-lock', workersAsyncLock]]],
];

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (n) => Math.round(n).toLocaleString('en-US');

const gcNote = globalThis.gc ? 'GC before each run' : 'no --expose-gc';
console.log(`node ${process.version}, ${MS} ms per run, ${ROUNDS} rounds, order rotated per round, ${gcNote}\n`);
console.log('| scenario | @vde/concurrency ops/s | async-mutex ops/s | async-lock ops/s | vs async-mutex | vs async-lock |');
console.log('|---|---:|---:|---:|---:|---:|');
const perRound = [];
for (const [name, runs] of scenarios) {
  const results = runs.map(() => []);
  for (let w = 0; w < 2; w++) for (const [, fn] of runs) await fn(); // warm-up (twice: after one, round 1 was an outlier)
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < runs.length; k++) {
      const i = (r + k) % runs.length;
      results[i][r] = await measure(runs[i][1]);
    }
  }
  const [vde, mutex, alock] = results;
  const vsMutex = vde.map((v, r) => v / mutex[r]);
  const vsLock = vde.map((v, r) => v / alock[r]);
  perRound.push(`${name}: ${vsLock.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(
    `| ${name} | ${fmt(median(vde))} | ${fmt(median(mutex))} | ${fmt(median(alock))} | ` +
      `${median(vsMutex).toFixed(2)}x | ${median(vsLock).toFixed(2)}x |`,
  );
}
console.log(`\n@vde/concurrency / async-lock in each round:\n${perRound.join('\n')}`);
