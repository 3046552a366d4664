// FileBlockDevice benchmark: 4 KiB writes with and without fsync, concurrent writes, reads.
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

  rows.push(['write 4 KiB, then sync (one at a time)', await timed(async () => {
    await dev.write(nextBlock(), block);
    await dev.sync();
    return 1;
  })]);
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
