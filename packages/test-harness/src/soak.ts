/**
 * `pnpm soak [--minutes 10] [--writers 16] [--seed N]`: mixed load on a file container; prints RSS, heap and open
 * file descriptors each minute and the slope; exits 1 if RSS grows more than 50% after the first minute, if
 * descriptors grow, or if an acknowledged write is lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { intOptions, table } from './cli-args.js';
import { runSoak } from './soak-runner.js';
import { createVdeAdapter } from './vde-adapter.js';

const mib = (n: number): string => (n / 2 ** 20).toFixed(1);

async function main(): Promise<void> {
  const o = intOptions(process.argv.slice(2), { minutes: 10, writers: 16, seed: Math.floor(Math.random() * 2 ** 31), 'sample-seconds': 60 }, 'soak [--minutes 10] [--writers 16] [--sample-seconds 60] [--seed N]', { fractional: ['minutes', 'sample-seconds'], positive: ['writers', 'sample-seconds'] });
  const dir = mkdtempSync(join(tmpdir(), 'vde-soak-'));
  console.log(`soak: ${o.minutes} min, ${o.writers} writers, seed ${o.seed}`);
  console.log('| minute | ops | RSS MiB | heap MiB | fds |');
  console.log('|---:|---:|---:|---:|---:|');
  try {
    const r = await runSoak({
      adapter: createVdeAdapter(),
      path: join(dir, 'soak.vde'),
      durationMs: o.minutes * 60_000,
      sampleEveryMs: o['sample-seconds'] * 1000,
      writers: o.writers,
      seed: o.seed,
      onSample: (s) => console.log(`| ${(s.elapsedMs / 60_000).toFixed(1)} | ${s.ops} | ${mib(s.rssBytes)} | ${mib(s.heapUsedBytes)} | ${s.fds} |`),
    });
    console.log('');
    console.log(
      table(
        ['figure', 'value'],
        [
          ['operations', r.ops],
          ['RSS growth after the first sample', `${r.rssGrowthPercent.toFixed(1)}%`],
          ['RSS slope', `${mib(r.rssSlopeBytesPerMinute)} MiB/min`],
          ['fd growth', r.fdGrowth],
          ['lost / corrupt', `${r.lost} / ${r.corrupt}`],
          ['verdict', r.passed ? 'flat' : `FAIL: ${r.reasons.join('; ')}`],
        ],
      ),
    );
    process.exitCode = r.passed ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
