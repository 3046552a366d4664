import { InvalidArgumentError, MemoryBlockDevice } from '@vde/block-device';
import { CuttingDevice, DurableCuttingDevice } from './device-wrappers.js';
import { FaultyBlockDevice } from './faulty-block-device.js';
import { type KeyState, OutcomeModel } from './outcome-model.js';
import { SeededRandom } from './random.js';
import type { StoreAdapter, StoreHandle } from './store-adapter.js';
import { hash32, metadataFor, valueFor } from './values.js';
import { describe, verifyAgainstModel } from './verify.js';
import { checkAdapter, checkCount, checkFunction, checkOptionsObject, checkSeed } from './options.js';

export interface PowerCutSweepOptions {
  /** Opens the store on a `BlockDevice`. */
  adapter: StoreAdapter;
  /** Cut points to try: each is one seeded run (seed = firstSeed + i). */
  cuts: number;
  firstSeed?: number;
  /** Block sizes to pick from (default [512, 4096]). */
  blockSizes?: number[];
  /** Concurrent writers (default 8), operations per writer (default 12), shared keys (default 12). */
  writers?: number;
  opsPerWriter?: number;
  keys?: number;
  /** Largest value (default 48 KiB). */
  maxValueBytes?: number;
  /** The cut comes at a write or sync numbered 1 … this (default 150). */
  maxCutOp?: number;
  /**
   * Power cuts per seed (default 2): after each recovery is verified, the writers go on on the recovered store
   * (as a process that recovered and serves again would), and the power is cut again. A recovery that left
   * something behind for the next one to trip on (a log record it dropped but did not remove, say) shows there.
   */
  rounds?: number;
  onCut?: (result: PowerCutResult) => void;
}

export interface PowerCutResult {
  seed: number;
  cutAt: number;
  acknowledged: number;
  lost: number;
  corrupt: number;
  consistent: boolean;
  problems: string[];
}

export interface PowerCutSweepReport {
  cuts: number;
  acknowledged: number;
  lost: number;
  corrupt: number;
  /** Cuts whose recovery or `check()` failed, or whose writers saw an untyped error. */
  failedCuts: number;
  /** The first problems, each with its seed (at most 50). */
  problems: string[];
}

/**
 * The power-cut sweep: for each seed, a store on a `FaultyBlockDevice` (over a `MemoryBlockDevice`) gets some
 * checkpointed state, then `writers` concurrent writers overwrite and delete shared keys while the power is cut at
 * a seeded write or sync (`CuttingDevice`: unsynced writes kept, dropped or torn per sector; odd seeds use a
 * `DurableCuttingDevice`, whose `writeDurable` lets the log keep two batches in flight). The image is reopened:
 * every acknowledged write must be there and whole, nothing else half there, and `check()` must pass. Then (for
 * `rounds` cuts per seed) the writers go on on the recovered store and the power is cut again, and so on.
 */
export async function runPowerCutSweep(options: PowerCutSweepOptions): Promise<PowerCutSweepReport> {
  const o = checkOptionsObject('runPowerCutSweep', options);
  checkAdapter('runPowerCutSweep', o);
  checkCount('runPowerCutSweep', o, 'cuts', 0, false);
  checkSeed('runPowerCutSweep', o, 'firstSeed', true);
  for (const name of ['writers', 'opsPerWriter', 'keys', 'maxCutOp', 'rounds']) checkCount('runPowerCutSweep', o, name, 1);
  checkCount('runPowerCutSweep', o, 'maxValueBytes', 0);
  checkFunction('runPowerCutSweep', o, 'onCut');
  checkBlockSizes(options.blockSizes);
  const report: PowerCutSweepReport = { cuts: 0, acknowledged: 0, lost: 0, corrupt: 0, failedCuts: 0, problems: [] };
  const first = options.firstSeed ?? 1;
  for (let seed = first; seed < first + options.cuts; seed++) {
    const r = await powerCutOnce(options, seed);
    report.cuts++;
    report.acknowledged += r.acknowledged;
    report.lost += r.lost;
    report.corrupt += r.corrupt;
    if (!r.consistent) report.failedCuts++;
    for (const p of r.problems) if (report.problems.length < 50) report.problems.push(`seed ${seed} (cut at op ${r.cutAt}): ${p}`);
    options.onCut?.(r);
  }
  return report;
}

function checkBlockSizes(sizes: unknown): void {
  if (sizes === undefined) return;
  const ok = (b: unknown): boolean => typeof b === 'number' && Number.isInteger(b) && b >= 512 && b <= 65536 && (b & (b - 1)) === 0;
  if (!Array.isArray(sizes) || sizes.length === 0 || !sizes.every(ok)) {
    throw new InvalidArgumentError('runPowerCutSweep: blockSizes must be a non-empty array of powers of two from 512 to 65536');
  }
}

/** One seeded power cut (exported through `runPowerCutSweep`; a failing seed replays with `cuts: 1, firstSeed`). */
async function powerCutOnce(options: PowerCutSweepOptions, seed: number): Promise<PowerCutResult> {
  const { adapter } = options;
  const rnd = new SeededRandom(seed);
  const blockSizes = options.blockSizes ?? [512, 4096];
  const blockSize = blockSizes[rnd.int(blockSizes.length)]!;
  const maxBytes = options.maxValueBytes ?? 48 * 1024;
  const keys = options.keys ?? 12;
  const base = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize }));
  let model = new OutcomeModel();
  const result: PowerCutResult = { seed, cutAt: 0, acknowledged: 0, lost: 0, corrupt: 0, consistent: true, problems: [] };
  let version = 1;
  // State from before the run, checkpointed and acknowledged.
  const setup = await adapter.open(new CuttingDevice(base, Infinity, seed));
  for (let i = 0; i < 5; i++) {
    const key = `k${rnd.int(keys)}`;
    const v = version++;
    const id = model.invoke(key, v);
    await setup.put(key, valueFor(seed, key, v, maxBytes), metadataFor(key, v));
    model.ack(id);
  }
  await setup.checkpoint?.();
  await setup.close();
  result.cutAt = 1 + rnd.int(options.maxCutOp ?? 150);
  // Odd seeds run on a device with writeDurable (two log batches may then be in flight), even seeds without it.
  const cutting = (inner: FaultyBlockDevice, cutAt: number): CuttingDevice =>
    (seed & 1) === 1 ? new DurableCuttingDevice(inner, cutAt, seed) : new CuttingDevice(inner, cutAt, seed);
  let dev = cutting(base, result.cutAt);
  let store: StoreHandle | undefined;
  try {
    store = await adapter.open(dev);
  } catch (err) {
    if (!dev.image) result.problems.push(`open before the cut failed: ${describe(adapter, err)}`);
  }
  const rounds = options.rounds ?? 2;
  for (let round = 1; ; round++) {
    if (store) await runWriters(options, store, dev, model, { seed, round, keys, maxBytes }, () => version++, result);
    result.acknowledged += model.acknowledged - (round === 1 ? 5 : 0);
    const image = dev.image ?? dev.inner.powerCut({ seed: seed + round - 1 });
    const next = new FaultyBlockDevice(image);
    // The recovered store runs on a device that cuts nothing until it is told to (the next round).
    const recoveredDev = cutting(next, Infinity);
    let recovered: StoreHandle;
    try {
      recovered = await adapter.open(recoveredDev);
    } catch (err) {
      result.consistent = false;
      result.problems.push(`recovery${round > 1 ? ` after cut ${round}` : ''} failed: ${describe(adapter, err)}`);
      return result;
    }
    let state: Map<string, KeyState> | undefined;
    try {
      const v = await verifyAgainstModel(adapter, recovered, model, seed, maxBytes);
      result.lost += v.lost;
      result.corrupt += v.corrupt;
      result.problems.push(...v.problems.map((p) => (round > 1 ? `after cut ${round}: ${p}` : p)));
      await recovered.check();
      state = v.state;
    } catch (err) {
      result.consistent = false;
      result.problems.push(`check${round > 1 ? ` after cut ${round}` : ''} failed: ${describe(adapter, err)}`);
    }
    if (round >= rounds || state === undefined || !result.consistent || result.problems.length > 0) {
      await recovered.close().catch(() => undefined);
      break;
    }
    // The next round: what the recovery found is the state before it; the writers go on, and the power is cut again.
    model = new OutcomeModel(state);
    recoveredDev.cutAfter(1 + rnd.int(options.maxCutOp ?? 150));
    dev = recoveredDev;
    store = recovered;
  }
  if (result.problems.some((p) => p.includes('untyped'))) result.consistent = false;
  return result;
}

/** The concurrent writers of one round, until their operations are done or the power is cut; then the store is closed. */
async function runWriters(
  options: PowerCutSweepOptions,
  s: StoreHandle,
  dev: CuttingDevice,
  model: OutcomeModel,
  { seed, round, keys, maxBytes }: { seed: number; round: number; keys: number; maxBytes: number },
  nextVersion: () => number,
  result: PowerCutResult,
): Promise<void> {
  await Promise.all(
    Array.from({ length: options.writers ?? 8 }, async (_, w) => {
      const wr = new SeededRandom(hash32(round === 1 ? `w${w}` : `w${w}/${round}`, seed));
      for (let i = 0; i < (options.opsPerWriter ?? 12) && !dev.image; i++) {
        const key = `k${wr.int(keys)}`;
        const del = wr.int(5) === 0;
        const v = del ? null : nextVersion();
        const id = model.invoke(key, v);
        try {
          if (v === null) await s.delete(key);
          else await s.put(key, valueFor(seed, key, v, maxBytes), metadataFor(key, v));
          model.ack(id);
        } catch (err) {
          model.fail(id);
          if (options.adapter.errorCode(err) === undefined) result.problems.push(`a write failed untyped: ${describe(options.adapter, err)}`);
          return; // the power is gone, or the store refuses after the failure
        }
      }
    }),
  );
  await s.close().catch(() => undefined);
}
