import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type ScrubReport, VirtualDiskEngine } from '@vde/engine';
import { type CliIo, write, writeJson } from '../cli-io.js';
import { type Command, flag, intOption, positionals } from '../command.js';
import { removeOwnContainer, replaceContainer } from '../container.js';
import { containerFilesSync, removeOnInterrupt } from '../interrupt.js';
import { formatBytes, formatCount, formatDuration, formatRate } from '../format.js';
import { runPool } from '../pool.js';
import { ProgressBar } from '../progress.js';
import { Workload } from '../workload.js';

interface RunResult {
  path: string;
  stripeCount: number;
  durationMs: number;
  objectsPerSecond: number;
  bytesPerSecond: number;
  stripes: { peakHeld: number; contended: number; acquisitions: number };
  wal: { records: number; syncs: number; storesPerSync: number };
}

/** Stores the whole workload into a fresh container with `stripeCount` stripes; returns the open engine. */
async function storeRun(
  io: CliIo,
  file: string,
  stripeCount: number,
  workload: Workload,
  writers: number,
  label: string,
  onCreated: () => void = () => undefined,
  onClaimed: () => void = () => undefined,
): Promise<{ vde: VirtualDiskEngine; result: RunResult }> {
  await replaceContainer(file);
  onClaimed(); // nothing is at `file` now: what appears there from here on is this run's
  const vde = await VirtualDiskEngine.open(file, { create: true, stripeCount, durability: 'sync' });
  onCreated();
  try {
    const walBefore = vde.stats().wal;
    vde.stripes.resetPeak();
    const stripesBefore = vde.stripes.stats();
    const bar = new ProgressBar(io.stderr, label, workload.count);
    const durationMs = await workload.storeAll(vde, writers, (bytes) => bar.tick(1, bytes));
    bar.finish();
    const stats = vde.stats();
    const records = stats.wal.records - walBefore.records;
    const syncs = stats.wal.syncs - walBefore.syncs;
    const result: RunResult = {
      path: file,
      stripeCount,
      durationMs,
      objectsPerSecond: (workload.count * 1000) / durationMs,
      bytesPerSecond: (workload.totalBytes * 1000) / durationMs,
      stripes: {
        peakHeld: stats.stripes.peakHeld,
        contended: stats.stripes.contended - stripesBefore.contended,
        acquisitions: stats.stripes.acquisitions - stripesBefore.acquisitions,
      },
      wal: { records, syncs, storesPerSync: syncs > 0 ? records / syncs : 0 },
    };
    return { vde, result };
  } catch (err) {
    await vde.close().catch(() => undefined);
    throw err;
  }
}

function describeRun(r: RunResult, count: number): string {
  return (
    `   ${formatCount(count)} objects in ${formatDuration(r.durationMs)}: ${formatRate(count, r.durationMs)}, ` +
    `${formatBytes(r.bytesPerSecond)}/s\n` +
    `   stripes: peak ${formatCount(r.stripes.peakHeld)} of ${formatCount(r.stripeCount)} held at once; ` +
    `${formatCount(r.stripes.contended)} of ${formatCount(r.stripes.acquisitions)} stores waited for a busy stripe\n` +
    `   fsyncs shared: ${formatCount(r.wal.records)} log records in ${formatCount(r.wal.syncs)} log fsyncs ` +
    `(${r.wal.storesPerSync.toFixed(1)} stores per fsync)\n`
  );
}

/** `vde-demo.vde` → `vde-demo.1-stripe.vde`, in the same directory (same disk: a fair comparison). */
function singleStripePath(file: string): string {
  const ext = path.extname(file);
  return `${ext ? file.slice(0, -ext.length) : file}.1-stripe${ext || '.vde'}`;
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'the tour: 64 concurrent durable writers vs the old global lock, recovery, scrub',
  usage: 'vde demo [<file>] [--objects <n>] [--keep]',
  help: `Shows what VDE does, in well under a minute:
  1. creates <file> (default ./vde-demo.vde; a VDE container already there is replaced, unless another process
     has it open for writing, while one that only reads it goes on reading the replaced file; any other file
     there is left alone and the demo stops) and stores a generated
     workload (3,000 objects of 1-64 KiB) with 64 concurrent writers, every store durable (fsynced); prints the
     stripe statistics and how many stores shared each fsync;
  2. stores the same workload with a single stripe (one global write lock, the old design) into a second
     container next to it, prints the speed-up, and deletes that container;
  3. closes <file>, reopens it and verifies every object byte for byte;
  4. scrubs <file> (reads and checks every checksum) and prints the summary.
Only <file> is left behind, so you can explore it (vde ls <file> --long); Ctrl-C during step 2 deletes the
second container before the demo ends.

Options:
  --objects <n>    number of objects (default 3000)
  --writers <n>    concurrent writers (default 64)
  --min-size <n>   smallest object (default 1k)
  --max-size <n>   largest object (default 64k)
  --keep           also keep the single-stripe container
  --json           print the measurements as one JSON document

Example:
  vde demo`,
  options: {
    objects: { type: 'string' },
    writers: { type: 'string' },
    'min-size': { type: 'string' },
    'max-size': { type: 'string' },
    keep: { type: 'boolean' },
  },
  json: true,
  async run(ctx) {
    const [file = './vde-demo.vde'] = positionals(ctx, 0, 1, '[<file>]');
    const count = intOption(ctx, 'objects', 3000, 1, 10_000_000);
    const writers = intOption(ctx, 'writers', 64, 1, 4096);
    const minBytes = intOption(ctx, 'min-size', 1024, 0, 64 << 20);
    const maxBytes = intOption(ctx, 'max-size', 64 << 10, minBytes, 64 << 20);
    const keep = flag(ctx, 'keep');
    const { io } = ctx;
    const say = (text: string): Promise<void> => (ctx.json ? Promise.resolve() : write(io.stdout, text));

    const workload = new Workload(count, minBytes, maxBytes, 'demo/object-');
    await say(
      `VDE demo: ${formatCount(count)} objects of ${formatBytes(minBytes)}–${formatBytes(maxBytes)} ` +
        `(${formatBytes(workload.totalBytes)} in all), ${formatCount(writers)} concurrent writers, every store durable\n\n`,
    );

    // 1. The striped engine (the default, 64 stripes).
    await say(`1. 64 stripes (the default): ${file}\n`);
    const striped = await storeRun(io, file, 64, workload, writers, '64 stripes');
    let vde = striped.vde;
    try {
      await say(describeRun(striped.result, count));
    } finally {
      await vde.close();
    }

    // 2. The same workload under one stripe: every store waits for the one before it, fsync included.
    const single = singleStripePath(file);
    await say(`\n2. 1 stripe (one global write lock, the old design): ${single}\n`);
    let singleResult: RunResult;
    // Removed afterwards only if this run created it: a file that replaceContainer refused (someone else's, or a
    // container another process has open) stays exactly as it was, also when the run fails.
    let created = false;
    let claimed = false;
    try {
      // Ctrl-C here would otherwise leave this container (tens of MiB) and its lock files behind.
      singleResult = await removeOnInterrupt(
        () => (!keep && claimed ? containerFilesSync(single) : []),
        async () => {
          const run = await storeRun(io, single, 1, workload, writers, '1 stripe  ', () => (created = true), () => (claimed = true));
          await run.vde.close();
          return run.result;
        },
      );
    } finally {
      if (!keep && created) await removeOwnContainer(single);
    }
    const speedup = singleResult.durationMs / striped.result.durationMs;
    await say(describeRun(singleResult, count));
    await say(`   → speed-up: ${speedup.toFixed(1)}× faster with 64 stripes than with 1 (same ${formatCount(writers)} writers, same data)\n`);
    if (!keep) await say(`   (deleted ${single})\n`);

    // 3. Recovery: close (done above), reopen, verify every object byte for byte.
    const reopenStarted = performance.now();
    vde = await VirtualDiskEngine.open(file, { create: false });
    let verified = 0;
    let listed = 0;
    let scrub: ScrubReport;
    const mismatched: string[] = [];
    try {
      for await (const info of vde.list()) {
        void info;
        listed++;
      }
      await runPool(workload.keys.keys(), 16, async (i) => {
        const bytes = await vde.retrieve(workload.keys[i]!);
        if (Buffer.compare(bytes, workload.data(i)) === 0) verified++;
        else mismatched.push(workload.keys[i]!);
      });
      const verifyMs = performance.now() - reopenStarted;
      await say(
        `\n3. recovery: closed and reopened ${file}: ${formatCount(verified)} of ${formatCount(count)} objects ` +
          `verified byte for byte, ${formatCount(listed)} listed (${formatDuration(verifyMs)})\n`,
      );

      // 4. Scrub: every index page and every object checksum.
      const bar = new ProgressBar(io.stderr, 'scrub', count);
      scrub = await vde.scrub({ onProgress: (p) => bar.update(p.objectsChecked, p.bytesChecked) });
      bar.finish();
      await say(
        `\n4. scrub ${scrub.ok ? 'ok' : 'FAILED'}: ${formatCount(scrub.objectsChecked)} objects, ${formatBytes(scrub.bytesChecked)} ` +
          `read and checksummed, index ${scrub.indexChecked ? 'ok' : 'damaged'}, ${formatDuration(scrub.durationMs)}\n`,
      );
      for (const p of scrub.problems) await say(`   ${p.key ?? '(index)'}: ${p.message} (${p.code})\n`);
    } finally {
      await vde.close();
    }
    const st = await fs.stat(file);
    const containerBytes = st.size;
    const allocatedBytes = st.blocks * 512;
    const ok = verified === count && listed === count && scrub.ok;
    if (ctx.json) {
      await writeJson(io.stdout, {
        ok,
        objects: count,
        bytes: workload.totalBytes,
        writers,
        striped: striped.result,
        singleStripe: singleResult,
        speedup,
        recovery: { verified, listed, mismatched },
        scrub,
        containerBytes,
        allocatedBytes,
      });
    } else {
      if (mismatched.length > 0) await say(`\nMISMATCH after reopen: ${mismatched.slice(0, 10).join(', ')}\n`);
      await say(`\n${ok ? 'Done' : 'FAILED'}. Kept ${file} (file size ${formatBytes(containerBytes)}, ${formatBytes(allocatedBytes)} allocated on disk). Try: vde ls ${file} --long --limit 5 (from the repository: node packages/cli/dist/bin.js ls …)\n`);
    }
    return ok ? 0 : 1;
  },
};
