// FileBlockDevice benchmark: 4 KiB writes with and without fsync, writeDurable, concurrent writes, reads.
// Build first: npx tsc -b packages/block-device; run: npx pnpm@10.34.9 --filter @vde/block-device bench
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileBlockDevice } from '../dist/index.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const BLOCKS = 16_384; // 64 MiB of 4 KiB blocks

async function timed(fn) {
  let ops = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  while (performance.now() < deadline) ops += await fn();
  return ops / ((performance.now() - start) / 1000);
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'vde-bench-'));
const rows = [];
try {
  const dev = await FileBlockDevice.open(path.join(dir, 'bench.vde'), { create: true, blockSize: 4096 });
  await dev.grow(BLOCKS);
  const block = new Uint8Array(4096).fill(0x5a);
  let next = 0;
  const nextBlock = () => (next = (next + 7919) % BLOCKS);

  // These two run interleaved in 24 slices each, which goes first alternating (the disk's speed changes within
  // seconds; a single sequential run of each is mostly noise).
  const pair = [
    ['write 4 KiB, then sync (one at a time)', async () => {
      await dev.write(nextBlock(), block);
      await dev.sync();
    }],
    // Everything before each call is synced, so each call is one O_DSYNC write (the first also opens the handle).
    ['writeDurable 4 KiB (one at a time; one O_DSYNC write)', () => dev.writeDurable(nextBlock(), block)],
  ];
  const pairTotals = pair.map(() => ({ ops: 0, ms: 0 }));
  for (let slice = 0; slice < 24; slice++) {
    for (let k = 0; k < pair.length; k++) {
      const i = (k + slice) % pair.length;
      const op = pair[i][1];
      const start = performance.now();
      const end = start + (SECONDS * 1000) / 24;
      while (performance.now() < end) {
        await op();
        pairTotals[i].ops++;
      }
      pairTotals[i].ms += performance.now() - start;
    }
  }
  for (const [i, [name]] of pair.entries()) rows.push([name, (pairTotals[i].ops * 1000) / pairTotals[i].ms]);
  rows.push(['write 4 KiB, no sync (one at a time)', await timed(async () => {
    await dev.write(nextBlock(), block);
    return 1;
  })]);
  rows.push(['64 concurrent 4 KiB writes, then one sync', await timed(async () => {
    await Promise.all(Array.from({ length: 64 }, () => dev.write(nextBlock(), block)));
    await dev.sync();
    return 64;
  })]);
  rows.push(['64 concurrent 4 KiB reads (page cache)', await timed(async () => {
    await Promise.all(Array.from({ length: 64 }, () => dev.read(nextBlock(), 1)));
    return 64;
  })]);
  await dev.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}

console.log(`FileBlockDevice, 4 KiB blocks, ${BLOCKS} blocks, ${os.tmpdir()}, Node ${process.version}`);
console.log('');
console.log('| operation | blocks/s |');
console.log('|-----------|----------|');
for (const [name, rate] of rows) console.log(`| ${name} | ${Math.round(rate).toLocaleString('en-US')} |`);
