// Demo of @vde/concurrency (plain JS against the build): `npm run demo` at the repository root, or
// `npx tsc -b packages/concurrency && node packages/concurrency/bench/demo.js`. Takes about a second.
//
// 1. 64 writers on 64 different keys, each holding its key's stripe for 40 ms of pretend I/O: they overlap, so
//    the wall time is close to one hold, not 64 of them, and `peakHeld` counts the stripes held at once.
// 2. 64 writers on ONE key, 5 ms each: they run one at a time, in the order they asked.
import { StripedWriteLock } from '../dist/index.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function writer(lock, key, holdMs, onEnter) {
  const region = await lock.acquire(key);
  try {
    onEnter?.();
    await sleep(holdMs); // the write's I/O would be in flight here
  } finally {
    region.release();
  }
}

// --- 1. different keys -------------------------------------------------------------------------------------------
{
  const lock = new StripedWriteLock(1024); // more stripes than writers: few keys share a stripe
  const keys = Array.from({ length: 64 }, (_, i) => `photos/${i}.jpg`);
  const distinct = new Set(keys.map((k) => lock.stripeOf(k))).size;
  const holdMs = 40;
  const start = performance.now();
  await Promise.all(keys.map((k) => writer(lock, k, holdMs)));
  const wall = performance.now() - start;
  const s = lock.stats();
  console.log(`64 writers, different keys (${distinct} distinct stripes of ${lock.stripeCount}):`);
  console.log(
    `  wall ${wall.toFixed(0)} ms vs ${64 * holdMs} ms of holds summed -> ${((64 * holdMs) / wall).toFixed(1)}x overlap; ` +
      `peakHeld ${s.peakHeld}, waited ${s.contended} of ${s.acquisitions}`,
  );
}

// --- 2. one key ----------------------------------------------------------------------------------------------------
{
  const lock = new StripedWriteLock(1024);
  const order = [];
  const holdMs = 5;
  const start = performance.now();
  await Promise.all(Array.from({ length: 64 }, (_, i) => writer(lock, 'photos/cover.jpg', holdMs, () => order.push(i))));
  const wall = performance.now() - start;
  const s = lock.stats();
  const fifo = order.every((w, i) => w === i);
  console.log('64 writers, one key:');
  console.log(
    `  wall ${wall.toFixed(0)} ms vs ${64 * holdMs} ms of holds summed (serialized); peakHeld ${s.peakHeld}, ` +
      `waited ${s.contended} of ${s.acquisitions}`,
  );
  console.log(`  ran in order: ${order.join(' ')} (${fifo ? 'FIFO, the order they asked' : 'NOT FIFO'})`);
}
