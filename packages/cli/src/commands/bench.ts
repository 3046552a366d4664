import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExistsError, VirtualDiskEngine } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, flag, intOption, positionals } from '../command.js';
import { removeOwnContainer } from '../container.js';
import { containerFilesSync, removeOnInterrupt } from '../interrupt.js';
import { formatCount, formatDuration, formatTable } from '../format.js';
import { ProgressBar } from '../progress.js';
import { Workload } from '../workload.js';

interface BenchRow {
  name: string;
  description: string;
  writers: number;
  stores: number;
  durationMs: number;
  storesPerSecond: number;
  logSyncs: number;
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'a quick durable-write benchmark: 1 writer vs 64 writers',
  usage: 'vde bench [<file>] [--ops <n>] [--stores <n>] [--keep]',
  help: `Measures durable 1 KiB stores on this disk: W1 = one writer (each store waits for its own fsync),
W2 = 64 concurrent writers (stores share fsyncs: group commit). The container is created fresh at <file>
(default: a temporary directory; an existing <file> is an error) and removed afterwards unless --keep, also
when the run is interrupted (Ctrl-C).
For the comparison with LMDB, LevelDB and SQLite, see packages/bench in the repository.

Options:
  --ops <n>      W1 stores (default 500)
  --stores <n>   W2 stores (default 5000)
  --writers <n>  W2 writers (default 64)
  --keep         keep the container
  --json         print the rows as JSON

Example:
  vde bench /mnt/ssd/bench.vde`,
  options: { ops: { type: 'string' }, stores: { type: 'string' }, writers: { type: 'string' }, keep: { type: 'boolean' } },
  json: true,
  async run(ctx) {
    const [given] = positionals(ctx, 0, 1, '[<file>]');
    const w1Count = intOption(ctx, 'ops', 500, 1);
    const w2Count = intOption(ctx, 'stores', 5000, 1);
    const writers = intOption(ctx, 'writers', 64, 1, 4096);
    const keep = flag(ctx, 'keep');
    let tempDir: string | undefined;
    let file: string;
    if (given === undefined) {
      tempDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vde-bench-'));
      file = path.join(tempDir, 'bench.vde');
    } else {
      file = given;
      if (await fs.stat(file).then(() => true, () => false)) throw new ExistsError(`${file} already exists (bench needs a fresh file)`);
    }
    const rows: BenchRow[] = [];
    // Ctrl-C during the run would otherwise leave the container (and the temporary directory) behind.
    const scratch = (): string[] => (keep ? [] : tempDir !== undefined ? [tempDir] : containerFilesSync(file));
    await removeOnInterrupt(scratch, async () => {
      try {
        const vde = await VirtualDiskEngine.open(file, { create: true });
        try {
          const runs = [
            { name: 'W1', description: '1 writer, durable, 1 KiB', writers: 1, workload: new Workload(w1Count, 1024, 1024, 'w1/') },
            { name: 'W2', description: `${writers} writers, durable, 1 KiB`, writers, workload: new Workload(w2Count, 1024, 1024, 'w2/') },
          ];
          for (const run of runs) {
            const syncsBefore = vde.stats().wal.syncs;
            const bar = new ProgressBar(ctx.io.stderr, run.name, run.workload.count);
            const durationMs = await run.workload.storeAll(vde, run.writers, (bytes) => bar.tick(1, bytes));
            bar.finish();
            rows.push({
              name: run.name,
              description: run.description,
              writers: run.writers,
              stores: run.workload.count,
              durationMs,
              storesPerSecond: (run.workload.count * 1000) / durationMs,
              logSyncs: vde.stats().wal.syncs - syncsBefore,
            });
          }
        } finally {
          await vde.close();
        }
      } finally {
        if (!keep) {
          await removeOwnContainer(file);
          if (tempDir !== undefined) await fs.rm(tempDir, { recursive: true, force: true });
        }
      }
    });
    const [w1, w2] = rows as [BenchRow, BenchRow];
    const speedup = w2.storesPerSecond / w1.storesPerSecond;
    if (ctx.json) {
      await writeJson(ctx.io.stdout, { file: keep ? file : undefined, rows, speedup });
    } else {
      const table = [
        ['', 'workload', 'stores', 'time', 'stores/s', 'log fsyncs'],
        ...rows.map((r) => [
          r.name,
          r.description,
          formatCount(r.stores),
          formatDuration(r.durationMs),
          formatCount(r.storesPerSecond),
          formatCount(r.logSyncs),
        ]),
      ];
      await write(ctx.io.stdout, `${formatTable(table, [2, 3, 4, 5])}\n`);
      await write(
        ctx.io.stdout,
        `${formatCount(writers)} writers vs 1: ${speedup.toFixed(1)}× the stores per second ` +
          `(${(w2.stores / Math.max(1, w2.logSyncs)).toFixed(1)} stores per fsync)\n`,
      );
      if (keep) await write(ctx.io.stdout, `kept ${file}\n`);
    }
    return 0;
  },
};
