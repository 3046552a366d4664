/**
 * `pnpm reliability [--kills N] [--cuts N] [--flips N] [--faults N] [--seed N] [--minutes N] [--histories N]`
 *
 * Runs VDE's reliability suite and prints a table: a crash campaign (SIGKILLed child processes), the power-cut
 * sweep, the corruption sweep (in a child process with --max-old-space-size=256), the I/O fault sweep,
 * linearizability checks of concurrent histories, and with --minutes a soak. Exits 1 if anything was lost,
 * corrupt or violated a rule. Every figure is reproducible from the printed seed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryBlockDevice } from '@vde/engine';
import { table, intOptions } from './cli-args.js';
import { type CorruptionSweepReport, runCorruptionSweep } from './corruption-sweep.js';
import { runCrashCampaign, vdeAdapterSpec } from './crash-runner.js';
import { runIoFaultSweep } from './io-fault-sweep.js';
import { runLinearizabilityWorkload } from './linearizability-workload.js';
import { runPowerCutSweep } from './power-cut-sweep.js';
import { runSoak } from './soak-runner.js';
import { createVdeAdapter } from './vde-adapter.js';
import { buildVdeImage, vdeRegions } from './vde-image.js';

const USAGE = 'reliability [--kills 20] [--cuts 2000] [--flips 1000] [--faults 480] [--histories 20] [--minutes 0] [--seed N]';
const SMALL_ENGINE = { walSizeBytes: 64 * 1024, cacheSizeBytes: 128 * 1024, checkpointWalUtilizationPercent: 60 };

async function corruptionPhase(flips: number, seed: number): Promise<CorruptionSweepReport> {
  const img = await buildVdeImage({ seed, objects: 150 });
  return runCorruptionSweep({
    adapter: createVdeAdapter(),
    ...img,
    regions: vdeRegions(img.image),
    flips,
    truncations: Math.max(6, Math.round(flips / 10)),
    seed,
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--corruption-child') {
    // The corruption sweep, run by the parent in a child with a small heap; prints its report as JSON.
    const report = await corruptionPhase(Number(argv[1]), Number(argv[2]));
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  const o = intOptions(
    argv,
    { kills: 20, cuts: 2000, flips: 1000, faults: 480, histories: 20, minutes: 0, seed: Math.floor(Math.random() * 2 ** 31) },
    USAGE,
    { fractional: ['minutes'] },
  );
  console.log(`reliability: seed ${o.seed} (replay with --seed ${o.seed})`);
  const phases: (string | number)[][] = [];
  let acked = 0;
  let lost = 0;
  let corrupt = 0;
  let violations = 0;
  const timed = async <T>(name: string, run: () => Promise<T>): Promise<[T, string]> => {
    const t = performance.now();
    process.stdout.write(`  ${name} …\n`);
    const r = await run();
    return [r, ((performance.now() - t) / 1000).toFixed(1)];
  };
  const show = (problems: string[]): void => {
    for (const p of problems.slice(0, 10)) console.log(`    ! ${p}`);
  };

  if (o.kills > 0) {
    const dir = mkdtempSync(join(tmpdir(), 'vde-reliability-'));
    try {
      const [r, s] = await timed(`crash campaign: ${o.kills} kills`, () =>
        runCrashCampaign({ adapter: vdeAdapterSpec({ walSizeBytes: 1 << 20 }), path: join(dir, 'crash.vde'), seed: o.seed, kills: o.kills }),
      );
      show(r.problems);
      phases.push(['crash (SIGKILL)', r.kills, r.acknowledged, r.lost, r.corrupt, r.failedRounds, s]);
      acked += r.acknowledged;
      lost += r.lost;
      corrupt += r.corrupt;
      violations += r.failedRounds;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (o.cuts > 0) {
    const [r, s] = await timed(`power cuts: ${o.cuts}`, () => runPowerCutSweep({ adapter: createVdeAdapter(SMALL_ENGINE), cuts: o.cuts, firstSeed: o.seed }));
    show(r.problems);
    phases.push(['power cut', r.cuts, r.acknowledged, r.lost, r.corrupt, r.failedCuts, s]);
    acked += r.acknowledged;
    lost += r.lost;
    corrupt += r.corrupt;
    violations += r.failedCuts;
  }
  let corruption: CorruptionSweepReport | undefined;
  if (o.flips > 0) {
    const [r, s] = await timed(`corruption: ${o.flips} flips`, async () => {
      const child = spawnSync(process.execPath, ['--max-old-space-size=256', fileURLToPath(import.meta.url), '--corruption-child', String(o.flips), String(o.seed)], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
        timeout: Math.max(600_000, o.flips * 10_000),
      });
      const last = child.stdout.trim().split('\n').pop() ?? '';
      if (child.status !== 0 || !last.startsWith('{')) {
        throw new Error(`the corruption child failed (status ${String(child.status)}, signal ${String(child.signal)}): ${child.stderr.slice(0, 2000)}`);
      }
      return JSON.parse(last) as CorruptionSweepReport;
    });
    corruption = r;
    show(r.problems);
    phases.push([`corruption (${r.flips} flips, ${r.truncations} truncations)`, r.trials, `${r.good} good reads`, 0, r.wrongReads, r.violations, s]);
    corrupt += r.wrongReads;
    violations += r.violations;
  }
  if (o.faults > 0) {
    const [r, s] = await timed(`I/O faults: ${o.faults}`, () => runIoFaultSweep({ adapter: createVdeAdapter(SMALL_ENGINE), faults: o.faults, seed: o.seed }));
    show(r.problems);
    phases.push([`I/O faults (${r.usableAfter} usable, ${r.refusedAfter} poisoned after)`, r.trials, r.acknowledged, r.lost, r.corrupt, r.violations, s]);
    acked += r.acknowledged;
    lost += r.lost;
    corrupt += r.corrupt;
    violations += r.violations;
  }
  let histories = { ok: 0, illegal: 0, unknown: 0, ops: 0 };
  if (o.histories > 0) {
    const [r, s] = await timed(`linearizability: ${o.histories} histories`, async () => {
      const h = { ok: 0, illegal: 0, unknown: 0, ops: 0 };
      for (let i = 0; i < o.histories; i++) {
        const res = await runLinearizabilityWorkload({ adapter: createVdeAdapter(SMALL_ENGINE), target: new MemoryBlockDevice({ blockSize: 4096 }), seed: o.seed + i });
        h[res.verdict]++;
        h.ops += res.operations;
        if (res.verdict !== 'ok') console.log(`    ! history ${i} (seed ${o.seed + i}): ${res.verdict} at key ${String(res.key)}`);
      }
      return h;
    });
    histories = r;
    phases.push([`linearizability (${r.ok} ok, ${r.unknown} unknown)`, o.histories, r.ops, 0, 0, r.illegal, s]);
    violations += r.illegal;
  }
  if (o.minutes > 0) {
    const dir = mkdtempSync(join(tmpdir(), 'vde-soak-'));
    try {
      const [r, s] = await timed(`soak: ${o.minutes} min`, () =>
        runSoak({ adapter: createVdeAdapter(), path: join(dir, 'soak.vde'), durationMs: o.minutes * 60_000, seed: o.seed }),
      );
      show(r.reasons);
      phases.push([`soak (RSS ${r.rssGrowthPercent.toFixed(1)}%, fds ${r.fdGrowth >= 0 ? '+' : ''}${r.fdGrowth})`, r.samples.length, r.ops, r.lost, r.corrupt, r.passed ? 0 : 1, s]);
      lost += r.lost;
      corrupt += r.corrupt;
      violations += r.passed ? 0 : 1;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log('');
  console.log(table(['phase', 'runs', 'acknowledged ops checked', 'lost', 'corrupt reads', 'failures', 'seconds'], phases));
  console.log('');
  console.log(
    table(
      ['figure', 'value'],
      [
        ['kills', o.kills],
        ['cut points', o.cuts],
        ['flips', corruption?.flips ?? 0],
        ['truncations', corruption?.truncations ?? 0],
        ['faults', o.faults],
        ['acknowledged ops checked', acked],
        ['lost', lost],
        ['corrupt reads', corrupt],
        ['damage detected (typed ERR_VDE_CORRUPT/FORMAT)', corruption?.detected ?? 0],
        ['histories linearizable / illegal / unknown', `${histories.ok} / ${histories.illegal} / ${histories.unknown}`],
        ['other failures', violations],
        ['seed', o.seed],
      ],
    ),
  );
  process.exitCode = lost + corrupt + violations > 0 ? 1 : 0;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
