import { readdirSync } from 'node:fs';
import { OutcomeModel } from './outcome-model.js';
import { SeededRandom } from './random.js';
import type { StoreAdapter, StoreHandle } from './store-adapter.js';
import { hash32, metadataFor, valueFor } from './values.js';
import { verifyAgainstModel } from './verify.js';
import { checkAdapter, checkCount, checkFunction, checkNumber, checkOptionsObject, checkSeed, checkString } from './options.js';

export interface SoakOptions {
  adapter: StoreAdapter;
  /** The container file. */
  path: string;
  durationMs: number;
  /** A sample (and a close + reopen of the store) every this many ms (default 60,000). */
  sampleEveryMs?: number;
  seed: number;
  /** Concurrent writers (default 16), keys (default 512), largest value (default 256 KiB). */
  writers?: number;
  keys?: number;
  maxValueBytes?: number;
  /** Fail when RSS grows more than this percent over the first sample (default 50). */
  maxRssGrowthPercent?: number;
  onSample?: (sample: SoakSample) => void;
}

export interface SoakSample {
  elapsedMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Open file descriptors (entries of /proc/self/fd), or -1 where that does not exist. */
  fds: number;
  /** Operations completed so far. */
  ops: number;
}

export interface SoakReport {
  samples: SoakSample[];
  ops: number;
  /** RSS of the last sample over the first, in percent (the first is taken after one interval of load). */
  rssGrowthPercent: number;
  /** Least-squares slope of RSS over the samples, bytes per minute. */
  rssSlopeBytesPerMinute: number;
  fdGrowth: number;
  lost: number;
  corrupt: number;
  passed: boolean;
  reasons: string[];
}

/** Open file descriptors of this process (Linux: /proc/self/fd), or -1. */
export function openFileDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

/**
 * The soak: mixed puts, gets and deletes by `writers` concurrent writers on a file container for `durationMs`.
 * Every `sampleEveryMs` the writers pause, the store is closed and reopened (so leaked handles show up), and RSS,
 * heap and open descriptors are sampled. It fails if RSS grows more than `maxRssGrowthPercent` over the first sample,
 * if descriptors grow, or if the final contents lose an acknowledged write.
 */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const o = checkOptionsObject('runSoak', options);
  checkAdapter('runSoak', o);
  checkString('runSoak', o, 'path');
  checkNumber('runSoak', o, 'durationMs', 0, false);
  checkNumber('runSoak', o, 'sampleEveryMs', 0, true, true);
  checkSeed('runSoak', o, 'seed', false);
  for (const name of ['writers', 'keys']) checkCount('runSoak', o, name, 1);
  checkCount('runSoak', o, 'maxValueBytes', 0);
  checkNumber('runSoak', o, 'maxRssGrowthPercent', 0);
  checkFunction('runSoak', o, 'onSample');
  const { adapter } = options;
  const every = options.sampleEveryMs ?? 60_000;
  const keys = options.keys ?? 512;
  const maxBytes = options.maxValueBytes ?? 256 * 1024;
  const model = new OutcomeModel();
  const samples: SoakSample[] = [];
  const started = Date.now();
  let ops = 0;
  let version = 1;
  let store: StoreHandle = await adapter.open(options.path);
  const rnds = Array.from({ length: options.writers ?? 16 }, (_, w) => new SeededRandom(hash32(`soak ${w}`, options.seed)));
  while (Date.now() - started < options.durationMs) {
    const periodEnd = Math.min(started + options.durationMs, Date.now() + every);
    const s = store;
    await Promise.all(
      rnds.map(async (rnd) => {
        while (Date.now() < periodEnd) {
          const key = `soak/${rnd.int(keys)}`;
          const kind = rnd.int(20);
          if (kind < 5) {
            await s.get(key);
          } else {
            const v = kind < 8 ? null : version++;
            const id = model.invoke(key, v);
            if (v === null) await s.delete(key);
            else await s.put(key, valueFor(options.seed, key, v, maxBytes), metadataFor(key, v));
            model.ack(id);
          }
          ops++;
        }
      }),
    );
    await store.close();
    store = await adapter.open(options.path);
    const m = process.memoryUsage();
    const sample: SoakSample = { elapsedMs: Date.now() - started, rssBytes: m.rss, heapUsedBytes: m.heapUsed, fds: openFileDescriptors(), ops };
    samples.push(sample);
    options.onSample?.(sample);
  }
  const verify = await verifyAgainstModel(adapter, store, model, options.seed, maxBytes);
  await store.check();
  await store.close();
  const first = samples[0];
  const last = samples[samples.length - 1];
  const reasons: string[] = [];
  const rssGrowthPercent = first && last ? ((last.rssBytes - first.rssBytes) / first.rssBytes) * 100 : 0;
  const fdGrowth = first && last && first.fds >= 0 ? last.fds - first.fds : 0;
  if (rssGrowthPercent > (options.maxRssGrowthPercent ?? 50)) reasons.push(`RSS grew ${rssGrowthPercent.toFixed(1)}% after the first sample`);
  if (fdGrowth > 0) reasons.push(`open file descriptors grew by ${fdGrowth}`);
  if (verify.lost + verify.corrupt > 0) reasons.push(`${verify.lost} lost and ${verify.corrupt} corrupt keys: ${verify.problems.slice(0, 3).join('; ')}`);
  return {
    samples,
    ops,
    rssGrowthPercent,
    rssSlopeBytesPerMinute: slope(samples.map((x) => [x.elapsedMs / 60_000, x.rssBytes])),
    fdGrowth,
    lost: verify.lost,
    corrupt: verify.corrupt,
    passed: reasons.length === 0,
    reasons,
  };
}

function slope(points: [number, number][]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
