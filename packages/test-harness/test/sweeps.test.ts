import { MemoryBlockDevice } from '@vde/block-device';
import {
  buildVdeImage,
  createVdeAdapter,
  runCorruptionSweep,
  runIoFaultSweep,
  runPowerCutSweep,
  vdeRegions,
  type StoreAdapter,
} from '@vde/test-harness';
import { describe, expect, it } from 'vitest';

const SMALL = { walSizeBytes: 64 * 1024, cacheSizeBytes: 128 * 1024, checkpointWalUtilizationPercent: 60 };
const random = Math.floor(Math.random() * 2 ** 31);

describe('power-cut sweep (FaultyBlockDevice.powerCut at seeded writes and syncs)', () => {
  const cuts = process.env.VDE_LONG ? 10_000 : 200;
  it(`${cuts} cut points lose nothing acknowledged, tear nothing, and check() passes`, async () => {
    const report = await runPowerCutSweep({ adapter: createVdeAdapter(SMALL), cuts, firstSeed: 1 });
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ cuts, lost: 0, corrupt: 0, failedCuts: 0 });
    expect(report.acknowledged).toBeGreaterThan(cuts);
  }, 600_000);

  it('a second cut after each recovery: the seeds where a recovery left dropped log records behind', async () => {
    // Seeds 477, 986 and 1073 of a 3,000-seed sweep, two cuts each, on the engine before recovery removed the log
    // records it drops: objects read ERR_VDE_CORRUPT after the second cut (477), or the second recovery failed
    // "block ... is already in use" (986, 1073). With one cut per seed (the sweep before `rounds`) all three pass.
    for (const firstSeed of [477, 986, 1073]) {
      const report = await runPowerCutSweep({ adapter: createVdeAdapter(SMALL), cuts: 1, firstSeed, rounds: 2 });
      expect(report.problems).toEqual([]);
      expect(report).toMatchObject({ cuts: 1, lost: 0, corrupt: 0, failedCuts: 0 });
    }
  }, 60_000);

  it(`20 cut points from a random first seed ${random}`, async () => {
    console.log(`power-cut sweep random first seed ${random} (replay: runPowerCutSweep({ cuts: 20, firstSeed: ${random} }))`);
    const report = await runPowerCutSweep({ adapter: createVdeAdapter(SMALL), cuts: 20, firstSeed: random });
    expect(report.problems).toEqual([]);
    expect(report.failedCuts).toBe(0);
  }, 60_000);
});

describe('corruption sweep (flips and truncations in every region)', () => {
  it('finds every region of a VDE image from its superblocks', async () => {
    const img = await buildVdeImage({ seed: 1, objects: 40 });
    const regions = vdeRegions(img.image);
    expect(regions.map((r) => r.name)).toEqual(['superblock A', 'superblock B', 'log', 'meta blob', 'index pages', 'data']);
    for (const r of regions) expect(r.ranges.length, r.name).toBeGreaterThan(0);
    expect(() => vdeRegions(new Uint8Array(8192))).toThrow(RangeError);
  });

  const flips = process.env.VDE_LONG ? 3000 : 150;
  it(`${flips} flips and truncations give right data or ERR_VDE_CORRUPT/FORMAT, never wrong bytes, hangs or untyped errors`, async () => {
    const img = await buildVdeImage({ seed: 3, objects: 100 });
    const report = await runCorruptionSweep({
      adapter: createVdeAdapter(),
      ...img,
      regions: vdeRegions(img.image),
      flips,
      truncations: 24,
      seed: 3,
    });
    expect(report.problems).toEqual([]);
    expect(report.wrongReads).toBe(0);
    expect(report.trials).toBe(flips + 24);
    expect(Object.keys(report.byRegion)).toHaveLength(6);
    expect(report.detected).toBeGreaterThan(20);
    expect(report.good).toBeGreaterThan(0);
  }, 600_000);

  it('reports a store that returns damaged bytes', async () => {
    const img = await buildVdeImage({ seed: 4, objects: 20 });
    const vde = createVdeAdapter();
    const liar: StoreAdapter = {
      ...vde,
      async open(target, o) {
        const h = await vde.open(target, o);
        return {
          ...h,
          async get(key) {
            const got = await h.get(key);
            if (got && got.value.byteLength > 0) got.value[0] = got.value[0]! ^ 1;
            return got;
          },
        };
      },
    };
    const report = await runCorruptionSweep({ adapter: liar, ...img, regions: vdeRegions(img.image), flips: 3, truncations: 0, seed: 1 });
    expect(report.wrongReads).toBeGreaterThan(0);
  });
});

describe('I/O fault sweep (EIO and ENOSPC at every n-th I/O)', () => {
  const faults = process.env.VDE_LONG ? 2000 : 160;
  it(`${faults} faults fail with typed errors, leave the engine usable or poisoned, and lose nothing acknowledged`, async () => {
    const report = await runIoFaultSweep({ adapter: createVdeAdapter(SMALL), faults, seed: 7, maxNth: 80 });
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ trials: faults, lost: 0, corrupt: 0, violations: 0 });
    expect(report.typedFailures).toBeGreaterThan(faults / 2);
    expect(report.refusedAfter).toBeGreaterThan(0); // failed fsyncs poison the engine
    expect(report.usableAfter).toBeGreaterThan(0); // failed reads do not
  }, 600_000);

  it('reports a store that lets an untyped error escape', async () => {
    const vde = createVdeAdapter(SMALL);
    const leaky: StoreAdapter = {
      ...vde,
      async open(target, o) {
        const h = await vde.open(target, o);
        return {
          ...h,
          put: (k, v, m) =>
            h.put(k, v, m).catch((err: unknown) => {
              throw new Error(`raw: ${String(err)}`);
            }),
        };
      },
    };
    const report = await runIoFaultSweep({ adapter: leaky, faults: 12, seed: 1, maxNth: 12 });
    expect(report.violations).toBeGreaterThan(0);
    expect(report.problems.join('\n')).toMatch(/untyped/);
  });

  it('a raw device error is typed by TypedErrorDevice as IoError / FullError', async () => {
    const { FaultyBlockDevice, TypedErrorDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 512, blockCount: 4 }));
    const dev = new TypedErrorDevice(faulty);
    faulty.failAfter(1, 'ENOSPC', { op: 'write' });
    await expect(dev.write(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'ERR_VDE_FULL' });
    faulty.failAfter(1, 'EIO', { op: 'sync' });
    await expect(dev.sync()).rejects.toMatchObject({ code: 'ERR_VDE_IO' });
  });
});
