import { InvalidArgumentError, MemoryBlockDevice } from '@vde/block-device';
import { withTimeout } from './device-wrappers.js';
import { SeededRandom } from './random.js';
import type { StoreAdapter, StoreHandle, StoredObject } from './store-adapter.js';
import { sameBytes, sameMetadata } from './values.js';
import { describe } from './verify.js';
import { checkAdapter, checkCount, checkFunction, checkNumber, checkOptionsObject, checkSeed } from './options.js';

/** A named part of a container image: byte ranges [start, end). */
export interface ImageRegion {
  name: string;
  ranges: [start: number, end: number][];
}

export interface CorruptionSweepOptions {
  adapter: StoreAdapter;
  /** A cleanly closed container image and its block size. */
  image: Uint8Array;
  blockSize: number;
  /** What the image holds: every key and its object. */
  expected: ReadonlyMap<string, StoredObject>;
  /** Regions to damage, in turn (e.g. `vdeRegions(image)`); empty regions are skipped. */
  regions: ImageRegion[];
  /** Single-bit flips (spread over the regions in turn). */
  flips: number;
  /** Truncations (at a block boundary inside each region, in turn). */
  truncations: number;
  seed: number;
  /** Each open/get/list/scrub/close must settle within this (default 10,000 ms). */
  timeoutMs?: number;
  /** Peak growth of RSS + ArrayBuffer memory allowed during one trial (default 256 MiB). */
  memoryCapBytes?: number;
  onTrial?: (trial: CorruptionTrial) => void;
}

export interface CorruptionTrial {
  kind: 'flip' | 'truncate';
  region: string;
  /** Byte offset of the flip, or the new length. */
  offset: number;
  /** Reads that returned the right object. */
  good: number;
  /** Calls that failed with one of the adapter's corruption codes (damage detected). */
  detected: number;
  /** Violations: wrong bytes, a missing or unexpected key, untyped or wrongly typed errors, hangs, memory. */
  violations: string[];
}

export interface CorruptionSweepReport {
  trials: number;
  flips: number;
  truncations: number;
  good: number;
  detected: number;
  /** Reads that returned wrong bytes or metadata (the worst outcome). */
  wrongReads: number;
  violations: number;
  /** Trials per region. */
  byRegion: Record<string, number>;
  /** The first violations (at most 50), each with the trial. */
  problems: string[];
}

/**
 * The corruption sweep: flips one bit, or truncates the image, in each region in turn, then opens the store on
 * the damaged copy and reads every key, lists, scrubs and closes. Each answer must be right or an error with one
 * of `adapter.corruptCodes` — never wrong bytes, never an untyped error, never a hang (`timeoutMs`), never a peak
 * memory growth above `memoryCapBytes` (sampled every 2 ms and at every step; an allocation freed between samples
 * can escape it — run the sweep in a child with a small `--max-old-space-size` too).
 */
export async function runCorruptionSweep(options: CorruptionSweepOptions): Promise<CorruptionSweepReport> {
  const o = checkOptionsObject('runCorruptionSweep', options);
  checkAdapter('runCorruptionSweep', o);
  if (!(o.image instanceof Uint8Array)) throw new InvalidArgumentError('runCorruptionSweep: image must be a Uint8Array');
  checkCount('runCorruptionSweep', o, 'blockSize', 512, false);
  if (!(o.expected instanceof Map)) throw new InvalidArgumentError('runCorruptionSweep: expected must be a Map of key to StoredObject');
  if (!Array.isArray(o.regions)) throw new InvalidArgumentError('runCorruptionSweep: regions must be an array (e.g. vdeRegions(image))');
  checkCount('runCorruptionSweep', o, 'flips', 0, false);
  checkCount('runCorruptionSweep', o, 'truncations', 0, false);
  checkSeed('runCorruptionSweep', o, 'seed', false);
  checkNumber('runCorruptionSweep', o, 'timeoutMs', 0, true, true);
  checkNumber('runCorruptionSweep', o, 'memoryCapBytes', 0, true, true);
  checkFunction('runCorruptionSweep', o, 'onTrial');
  const rnd = new SeededRandom(options.seed);
  const regions = options.regions.filter((r) => r.ranges.some(([s, e]) => e > s));
  if (regions.length === 0) throw new RangeError('no non-empty region to damage');
  const report: CorruptionSweepReport = {
    trials: 0,
    flips: 0,
    truncations: 0,
    good: 0,
    detected: 0,
    wrongReads: 0,
    violations: 0,
    byRegion: {},
    problems: [],
  };
  const bs = options.blockSize;
  const plan: { kind: 'flip' | 'truncate'; region: ImageRegion }[] = [];
  for (let i = 0; i < options.flips; i++) plan.push({ kind: 'flip', region: regions[i % regions.length]! });
  for (let i = 0; i < options.truncations; i++) plan.push({ kind: 'truncate', region: regions[i % regions.length]! });
  for (const { kind, region } of plan) {
    const [start, end] = pickRange(region, rnd);
    let damaged: Uint8Array;
    let offset: number;
    if (kind === 'flip') {
      damaged = options.image.slice();
      offset = start + rnd.int(end - start);
      for (let tries = 0; tries < 8 && damaged[offset] === 0; tries++) offset = start + rnd.int(end - start); // prefer written bytes
      damaged[offset] = damaged[offset]! ^ (1 << rnd.int(8));
      report.flips++;
    } else {
      const firstBlock = Math.floor(start / bs);
      const lastBlock = Math.max(firstBlock, Math.ceil(end / bs) - 1);
      offset = (firstBlock + rnd.int(lastBlock - firstBlock + 1)) * bs;
      damaged = options.image.slice(0, offset);
      report.truncations++;
    }
    const trial = await runTrial(options, damaged, kind, region.name, offset);
    report.trials++;
    report.byRegion[region.name] = (report.byRegion[region.name] ?? 0) + 1;
    report.good += trial.good;
    report.detected += trial.detected;
    report.violations += trial.violations.length;
    report.wrongReads += trial.violations.filter((v) => v.includes('wrong')).length;
    for (const v of trial.violations.slice(0, 3)) if (report.problems.length < 50) report.problems.push(`${kind} ${region.name} @${offset}: ${v}`);
    options.onTrial?.(trial);
  }
  return report;
}

function pickRange(region: ImageRegion, rnd: SeededRandom): [number, number] {
  const ranges = region.ranges.filter(([s, e]) => e > s);
  return ranges[rnd.int(ranges.length)]!;
}

function memoryNow(): number {
  const m = process.memoryUsage();
  return m.rss + m.arrayBuffers;
}

async function runTrial(options: CorruptionSweepOptions, damaged: Uint8Array, kind: 'flip' | 'truncate', region: string, offset: number): Promise<CorruptionTrial> {
  const { adapter } = options;
  const trial: CorruptionTrial = { kind, region, offset, good: 0, detected: 0, violations: [] };
  const timeoutMs = options.timeoutMs ?? 10_000;
  const cap = options.memoryCapBytes ?? 256 << 20;
  const baseline = memoryNow();
  let peak = baseline;
  const sample = (): void => {
    peak = Math.max(peak, memoryNow());
  };
  const sampler = setInterval(sample, 2);
  /** Runs one call; returns its value, or undefined after recording a detection or a violation. */
  const guard = async <T>(what: string, call: () => Promise<T>): Promise<{ value: T } | undefined> => {
    try {
      const value = await withTimeout(call(), timeoutMs, () => new Error(`${what} did not settle within ${timeoutMs} ms (hang)`));
      sample();
      return { value };
    } catch (err) {
      sample();
      const code = adapter.errorCode(err);
      if (code !== undefined && adapter.corruptCodes.includes(code)) trial.detected++;
      else trial.violations.push(`${what}: ${describe(adapter, err)}`);
      return undefined;
    }
  };
  try {
    const device = MemoryBlockDevice.fromImage(damaged.byteLength > 0 ? damaged : new Uint8Array(0), options.blockSize);
    const opened = await guard('open', () => adapter.open(device, { create: false }));
    if (!opened) return trial;
    const store: StoreHandle = opened.value;
    for (const [key, want] of options.expected) {
      const got = await guard(`get ${key}`, () => store.get(key));
      if (!got) continue;
      if (!got.value) trial.violations.push(`get ${key}: missing (an acknowledged object vanished without an error)`);
      else if (!sameBytes(got.value.value, want.value) || !sameMetadata(got.value.metadata, want.metadata)) {
        trial.violations.push(`get ${key}: wrong bytes or metadata (${got.value.value.byteLength} bytes, want ${want.value.byteLength})`);
      } else trial.good++;
    }
    const listed = await guard('list', () => store.keys());
    if (listed) {
      for (const k of listed.value) if (!options.expected.has(k)) trial.violations.push(`list: unexpected key ${JSON.stringify(k)}`);
    }
    if (store.scrub) {
      const scrubbed = await guard('scrub', () => store.scrub!());
      for (const p of scrubbed?.value.problems ?? []) {
        if (adapter.corruptCodes.includes(p.code)) trial.detected++;
        else trial.violations.push(`scrub problem with code ${p.code}${p.key === undefined ? '' : ` (key ${p.key})`}`);
      }
    }
    await guard('close', () => store.close());
  } finally {
    clearInterval(sampler);
    sample();
    if (peak - baseline > cap) trial.violations.push(`memory grew by ${Math.round((peak - baseline) / 2 ** 20)} MiB during the trial (cap ${cap >> 20} MiB)`);
  }
  return trial;
}
