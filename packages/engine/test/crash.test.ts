import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { CuttingDevice, FaultyBlockDevice, SeededRandom } from '@vde/test-harness';
import { describe, expect, it } from 'vitest';
import { bytes, checked } from './helpers.js';

const OPTS = { walSizeBytes: 64 * 1024, cacheSizeBytes: 128 * 1024, checkpointWalUtilizationPercent: 60 } as const;

type Expect = { acked: Uint8Array | null | undefined; pending: (Uint8Array | null)[] };

/**
 * One seeded run: 8 concurrent writers (each owning its keys, so per-key order is program order) store,
 * overwrite and delete objects of 0 B to 40 KiB while the power is cut at a random write or sync.
 * After recovery, every acknowledged operation must be there, and every key holds its last acknowledged
 * value or the value of the one operation in flight at the cut — whole, never torn.
 */
async function crashRun(seed: number): Promise<{ acked: number; preflushes: number }> {
  const rnd = new SeededRandom(seed);
  const blockSize = [512, 4096][rnd.int(2)]!;
  const base = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize }));
  const setup = await VirtualDiskEngine.open(new CuttingDevice(base, Infinity, seed), { ...OPTS, blockSize });
  const model = new Map<string, Expect>();
  // Some state from before the run, checkpointed.
  for (let i = 0; i < 5; i++) {
    const v = bytes(rnd.int(3000), seed * 7 + i);
    await setup.store(`pre${i}`, v);
    model.set(`pre${i}`, { acked: v, pending: [] });
  }
  await setup.checkpoint();
  const cutAt = 1 + rnd.int(120);
  const dev = new CuttingDevice(base, cutAt, seed);
  await setup.close();
  const vde = await VirtualDiskEngine.open(dev, OPTS).catch((err: unknown) => {
    if (process.env.VDE_DEBUG) console.log("open failed", err);
    return undefined;
  });
  let acked = 0;
  let preflushes = 0;
  if (vde) {
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 12 && !dev.image; i++) {
          const key = rnd.int(3) === 0 ? `pre${rnd.int(5)}` : `w${w}/k${rnd.int(4)}`;
          if (key.startsWith('pre') && w !== 0) continue; // writer 0 owns the pre* keys
          const e = model.get(key) ?? { acked: undefined, pending: [] };
          model.set(key, e);
          const del = rnd.int(5) === 0;
          const value = del ? null : bytes([0, 10, 700, 5000, 40_000][rnd.int(5)]!, seed * 1000 + w * 50 + i);
          e.pending = [value];
          try {
            if (del) await vde.delete(key);
            else await vde.store(key, value!);
            e.acked = value;
            e.pending = [];
            acked++;
          } catch {
            return; // the power is gone (or the engine refused after the failure): this writer stops
          }
        }
      }),
    );
    preflushes = vde.stats().preflushes;
    await vde.close().catch(() => undefined);
  }
  const image = dev.image ?? base.powerCut({ seed });
  const recovered = await VirtualDiskEngine.open(image, OPTS).catch((err: unknown) => {
    throw new Error(`seed ${seed} (cut at op ${cutAt}): recovery failed: ${String(err)}`, { cause: err });
  });
  for (const [key, e] of model) {
    const allowed = [e.acked, ...e.pending];
    const got = (await recovered.exists(key))
      ? await recovered.retrieve(key).catch(async (err: unknown) => {
          const st = await recovered.stat(key);
          throw new Error(`seed ${seed} (cut at op ${cutAt}): ${String(err)}; stat size ${st.size}; allowed sizes ${allowed.map((a) => a?.byteLength ?? a).join(',')}`, { cause: err });
        })
      : null;
    const ok = allowed.some((a) => (a === null || a === undefined ? got === null : got !== null && Buffer.compare(Buffer.from(a), Buffer.from(got)) === 0));
    if (!ok) throw new Error(`seed ${seed}: key ${key} holds ${got === null ? 'nothing' : `${got.byteLength} bytes`} which is neither acknowledged nor in flight`);
  }
  await checked(recovered);
  await recovered.close();
  return { acked, preflushes };
}

describe('power cut at random points of a concurrent workload (DESIGN.md invariant 3)', () => {
  const seeds = Number(process.env.VDE_CRASH_SEEDS ?? (process.env.VDE_LONG ? 10_000 : 1000));
  it(`loses no acknowledged write and tears no object over ${seeds} seeds`, async () => {
    let acked = 0;
    let preflushed = 0;
    const base = Number(process.env.VDE_SEED_BASE ?? 1);
    for (let s = base; s < base + seeds; s++) {
      const r = await crashRun(s);
      acked += r.acked;
      if (r.preflushes > 0) preflushed++;
    }
    expect(acked).toBeGreaterThan(seeds);
    // Automatic checkpoints flush the index ahead while stores go on: the cuts must land in and around that too.
    expect(preflushed).toBeGreaterThan(seeds / 20);
    if (process.env.VDE_DEBUG) console.log(`${preflushed} of ${seeds} runs flushed ahead of a checkpoint`);
  }, 600_000);
});
