// Benchmark: durable WAL appends of 1 KiB records on a real file, with 1 and with 64 concurrent appenders, beside
// a raw `write + datasync` loop of 1 KiB in the same run. Build first: `npx tsc -b packages/wal`.
// Run: `npx pnpm@10.34.9 --filter @vde/wal bench` (BENCH_SECONDS: time per workload, default 4; BENCH_ROUNDS: slices,
// default 24; BENCH_DEVICE=local: a bare FileHandle device instead of FileBlockDevice; BENCH_FLOOR=1: also run,
// interleaved with the rest, the lone appender's I/O with no log code: one 4 KiB O_DSYNC write per record at
// advancing offsets, as FileBlockDevice.writeDurable issues it. Its ratio is not a target; it shows how much of a gap
// is the log and how much the disk.)
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as blockDevice from '@vde/block-device';
import { WriteAheadLog } from '../dist/index.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const RECORD = 1024;
const BLOCK = 4096;
const REGION_BLOCKS = 8192; // 32 MiB log

/** A tiny BlockDevice over a FileHandle, used only if @vde/block-device has no FileBlockDevice yet. */
class LocalFileDevice {
  constructor(handle, blockCount) {
    this.handle = handle;
    this.blockSize = BLOCK;
    this.blockCount = blockCount;
    this.readOnly = false;
  }
  static async open(path, blockCount) {
    const handle = await open(path, 'w+');
    await handle.write(new Uint8Array(blockCount * BLOCK), 0, blockCount * BLOCK, 0); // allocated, not sparse
    await handle.sync();
    return new LocalFileDevice(handle, blockCount);
  }
  async read(blockNo, count) {
    const buf = new Uint8Array(count * BLOCK);
    await this.readInto(blockNo, buf);
    return buf;
  }
  async readInto(blockNo, buf) {
    await this.handle.read(buf, 0, buf.byteLength, blockNo * BLOCK);
  }
  async write(blockNo, data) {
    await this.handle.write(data, 0, data.byteLength, blockNo * BLOCK);
  }
  async sync() {
    await this.handle.datasync();
  }
  async grow() {}
  async close() {
    await this.handle.close();
  }
}

async function openDevice(path) {
  if (typeof blockDevice.FileBlockDevice !== 'function' || process.env.BENCH_DEVICE === 'local') return { device: await LocalFileDevice.open(path, REGION_BLOCKS), kind: 'local FileHandle device' };
  const device = await blockDevice.FileBlockDevice.open(path, { create: true, blockSize: BLOCK, lock: false });
  await device.grow(REGION_BLOCKS);
  // Write every block once, as the raw loop does with its ring: the file is allocated, not sparse, and its size
  // is durable, so later syncs flush data only (no block allocation), exactly like the raw loop's.
  const chunk = new Uint8Array(256 * BLOCK);
  for (let b = 0; b < REGION_BLOCKS; b += 256) await device.write(b, chunk);
  await device.sync();
  return { device, kind: 'FileBlockDevice' };
}

// The disks of shared machines change speed by several times within seconds, so the three workloads run
// interleaved in short slices (ROUNDS x SLICE each) and each total is compared with the others'.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 24);
const SLICE_MS = (SECONDS * 1000) / ROUNDS;

async function rawWorkload(dir) {
  const handle = await open(join(dir, 'raw.bin'), 'w+');
  const ring = 4096; // 4 MiB of 1 KiB slots, written once first so the loop never changes the file size
  await handle.write(new Uint8Array(ring * RECORD), 0, ring * RECORD, 0);
  await handle.sync();
  const data = new Uint8Array(RECORD).fill(7);
  let n = 0;
  return {
    async slice(end) {
      let done = 0;
      while (performance.now() < end) {
        await handle.write(data, 0, RECORD, (n % ring) * RECORD);
        await handle.datasync();
        n++;
        done++;
      }
      return done;
    },
    stats: () => ({ syncsPerRecord: 1, meanBatch: 1 }),
    close: () => handle.close(),
  };
}

/** The one-appender WAL's I/O without the WAL: a 4 KiB O_DSYNC write per record, at advancing block offsets. */
async function floorWorkload(dir) {
  const path = join(dir, 'floor.bin');
  const setup = await open(path, 'w+');
  await setup.write(new Uint8Array(REGION_BLOCKS * BLOCK), 0, REGION_BLOCKS * BLOCK, 0);
  await setup.sync();
  await setup.close();
  const handle = await open(path, constants.O_RDWR | constants.O_DSYNC);
  const block = new Uint8Array(BLOCK).fill(5);
  let n = 0;
  return {
    async slice(end) {
      let done = 0;
      while (performance.now() < end) {
        await handle.write(block, 0, BLOCK, (2 + (n % (REGION_BLOCKS / 2))) * BLOCK);
        n++;
        done++;
      }
      return done;
    },
    stats: () => ({ syncsPerRecord: 1, meanBatch: 1 }),
    close: () => handle.close(),
  };
}

async function walWorkload(dir, name, writers) {
  const { device, kind } = await openDevice(join(dir, `${name}.vde`));
  const wal = await WriteAheadLog.create(device, { startBlock: 0, blockCount: REGION_BLOCKS });
  const payload = new Uint8Array(RECORD).fill(9);
  const before = wal.stats();
  let truncating = false;
  return {
    kind,
    async slice(end) {
      let done = 0;
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (performance.now() < end) {
            await wal.append(1, payload);
            done++;
            if (wal.fillRatio > 0.5 && !truncating) {
              truncating = true; // what a checkpoint does: free what is durable
              await wal.truncate(wal.durableLsn);
              truncating = false;
            }
          }
        }),
      );
      return done;
    },
    stats() {
      const s = wal.stats();
      return { syncsPerRecord: (s.syncs - before.syncs) / (s.records - before.records), meanBatch: s.meanBatch };
    },
    async close() {
      await wal.close();
      await device.close();
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), 'vde-wal-bench-'));
try {
  const workloads = [
    { name: 'raw write+datasync loop, 1 KiB', w: await rawWorkload(dir) },
    { name: 'WAL, 1 appender, durable 1 KiB', w: await walWorkload(dir, 'one', 1) },
    { name: 'WAL, 64 appenders, durable 1 KiB', w: await walWorkload(dir, 'many', 64) },
  ];
  if (process.env.BENCH_FLOOR) workloads.push({ name: 'floor: O_DSYNC write 4 KiB, advancing (no log)', w: await floorWorkload(dir) });
  const totals = workloads.map(() => ({ records: 0, ms: 0 }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, { w }] of workloads.entries()) {
      const start = performance.now();
      totals[i].records += await w.slice(start + SLICE_MS);
      totals[i].ms += performance.now() - start;
    }
  }
  const perSecond = totals.map((t) => (t.records * 1000) / t.ms);
  const fmt = (x, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const ratios = [
    '1.00x raw',
    `${fmt(perSecond[1] / perSecond[0], 2)}x raw (target >= 0.9)`,
    `${fmt(perSecond[2] / perSecond[1], 1)}x 1 appender (target >= 20)`,
    `${fmt(perSecond[3] / perSecond[0], 2)}x raw; 1 appender is ${fmt(perSecond[1] / perSecond[3], 2)}x this`,
  ];
  console.log(`device: ${workloads[1].w.kind}, block 4096, ${ROUNDS} interleaved rounds, ${SECONDS} s per workload, tmp dir ${tmpdir()}`);
  console.log('| Workload | Records/s | Syncs/record | Mean batch | Ratio |');
  console.log('|---|---:|---:|---:|---|');
  for (const [i, { name, w }] of workloads.entries()) {
    const s = w.stats();
    console.log(`| ${name} | ${fmt(perSecond[i])} | ${fmt(s.syncsPerRecord, 3)} | ${fmt(s.meanBatch, 1)} | ${ratios[i]} |`);
  }
  for (const { w } of workloads) await w.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
