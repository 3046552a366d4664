import { InvalidArgumentError, MemoryBlockDevice } from '@vde/block-device';
import {
  FaultyBlockDevice,
  buildVdeImage,
  createVdeAdapter,
  loadAdapter,
  runCorruptionSweep,
  runCrashCampaign,
  runIoFaultSweep,
  runLinearizabilityWorkload,
  runPowerCutSweep,
  runSoak,
  vdeAdapterSpec,
  vdeRegions,
  type StoreAdapter,
} from '@vde/test-harness';
import { describe, expect, it } from 'vitest';

/** An adapter whose every use fails the test: a bad option must be refused before the runner touches the store. */
const untouchable = {
  open: () => {
    throw new Error('the runner opened the store although an option was bad');
  },
} as unknown as StoreAdapter;

async function refused(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidArgumentError);
  expect((err as InvalidArgumentError).code).toBe('ERR_VDE_INVALID_ARGUMENT');
  expect((err as Error).message).toMatch(pattern);
}

describe('runners refuse bad options with ERR_VDE_INVALID_ARGUMENT before they start', () => {
  it('runPowerCutSweep', async () => {
    const adapter = untouchable;
    await refused(() => runPowerCutSweep({ adapter, cuts: '3' as never }), /cuts must be a whole number/);
    await refused(() => runPowerCutSweep({ adapter, cuts: -1 }), /cuts must be a whole number >= 0, got -1/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1.5 }), /cuts/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, keys: 0 }), /keys must be a whole number >= 1/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, writers: 0 }), /writers/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, maxCutOp: 0 }), /maxCutOp/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, rounds: 0 }), /rounds must be a whole number >= 1/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, blockSizes: [] }), /blockSizes/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, blockSizes: [1000] }), /blockSizes/);
    await refused(() => runPowerCutSweep({ adapter, cuts: 1, firstSeed: Number.NaN }), /firstSeed/);
    await refused(() => runPowerCutSweep({ cuts: 1 } as never), /adapter must be a StoreAdapter/);
    await refused(() => runPowerCutSweep(null as never), /options must be an object/);
  });

  it('runIoFaultSweep', async () => {
    const adapter = untouchable;
    await refused(() => runIoFaultSweep({ adapter, faults: 1 } as never), /seed must be a finite number, got undefined/);
    await refused(() => runIoFaultSweep({ adapter, faults: -2, seed: 1 }), /faults/);
    await refused(() => runIoFaultSweep({ adapter, faults: 1, seed: 1, maxNth: 0 }), /maxNth/);
    await refused(() => runIoFaultSweep({ adapter, faults: 1, seed: 1, timeoutMs: 0 }), /timeoutMs must be a number > 0/);
  });

  it('runCrashCampaign', async () => {
    const adapter = vdeAdapterSpec();
    await refused(() => runCrashCampaign({ adapter, seed: 1, kills: 1 } as never), /path must be a non-empty string/);
    await refused(() => runCrashCampaign({ adapter, path: '/tmp/x.vde', seed: 1, kills: -1 }), /kills/);
    await refused(() => runCrashCampaign({ adapter, path: '/tmp/x.vde', kills: 1 } as never), /seed/);
    await refused(() => runCrashCampaign({ adapter, path: '/tmp/x.vde', seed: 1, kills: 1, deleteRatio: 2 }), /deleteRatio/);
    await refused(
      () => runCrashCampaign({ adapter, path: '/tmp/x.vde', seed: 1, kills: 1, minKillDelayMs: 50, maxKillDelayMs: 10 }),
      /minKillDelayMs/,
    );
    await refused(() => runCrashCampaign({ adapter: createVdeAdapter() as never, path: '/tmp/x.vde', seed: 1, kills: 1 }), /module spec/);
  });

  it('runCorruptionSweep, runSoak and runLinearizabilityWorkload', async () => {
    const img = await buildVdeImage({ seed: 1, objects: 3 });
    const base = { adapter: untouchable, ...img, regions: vdeRegions(img.image), flips: 1, truncations: 1, seed: 1 };
    await refused(() => runCorruptionSweep({ ...base, flips: -1 }), /flips/);
    await refused(() => runCorruptionSweep({ ...base, image: [1, 2] as never }), /image must be a Uint8Array/);
    await refused(() => runCorruptionSweep({ ...base, seed: undefined as never }), /seed/);
    const soak = { adapter: untouchable, path: '/tmp/x.vde', durationMs: 100, seed: 1 };
    await refused(() => runSoak({ ...soak, durationMs: -5 }), /durationMs/);
    await refused(() => runSoak({ ...soak, sampleEveryMs: 0 }), /sampleEveryMs must be a number > 0/);
    await refused(() => runSoak({ ...soak, writers: 0 }), /writers/);
    const target = new MemoryBlockDevice({ blockSize: 4096 });
    await refused(() => runLinearizabilityWorkload({ adapter: untouchable, target, seed: 1, keys: 0 }), /keys/);
    await refused(() => runLinearizabilityWorkload({ adapter: untouchable, target, seed: 1, clients: 0 }), /clients/);
    await refused(() => runLinearizabilityWorkload({ adapter: untouchable, target: 5 as never, seed: 1 }), /target/);
  });
});

describe('the VDE wiring refuses what it would ignore', () => {
  it('createVdeAdapter, loadAdapter, vdeRegions and buildVdeImage', async () => {
    for (const options of [5, null, 'x']) expect(() => createVdeAdapter(options as never)).toThrow(InvalidArgumentError);
    await refused(() => loadAdapter(null as never), /spec must be/);
    await refused(() => loadAdapter({ module: 42, exportName: 'x' } as never), /spec must be/);
    expect(() => vdeRegions(null as never)).toThrow(InvalidArgumentError);
    await refused(() => buildVdeImage({ seed: 1, objects: -1 }), /objects must be a whole number >= 0, got -1/);
    await refused(() => buildVdeImage({ objects: 1 } as never), /seed/);
  });
});

describe('FaultyBlockDevice refuses what it could not honour', () => {
  const device = (): FaultyBlockDevice => new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 512, blockCount: 4 }));

  it('failAfter with an unknown op (a fault that could never fire) or a non-boolean sticky', () => {
    expect(() => device().failAfter(1, 'EIO', { op: 'writes' as never })).toThrow(InvalidArgumentError);
    expect(() => device().failAfter(1, 'EIO', { sticky: 'yes' as never })).toThrow(InvalidArgumentError);
    expect(() => device().failAfter(1, 'EIO', null as never)).toThrow(InvalidArgumentError);
  });

  it('powerCut without a seed or with an unknown mode', () => {
    expect(() => device().powerCut(undefined as never)).toThrow(InvalidArgumentError);
    expect(() => device().powerCut({ seed: 'x' as never })).toThrow(InvalidArgumentError);
    expect(() => device().powerCut({ seed: 1, mode: 'none' as never })).toThrow(InvalidArgumentError);
    const d = device();
    expect(() => d.powerCut({ seed: 1, mode: 'bogus' as never })).toThrow(InvalidArgumentError);
    expect(d.powerCut({ seed: 1, mode: 'drop-all' }).blockSize).toBe(512); // a refused call did not cut the power
  });

  it('a constructor argument that is not a BlockDevice', () => {
    expect(() => new FaultyBlockDevice(null as never)).toThrow(InvalidArgumentError);
    expect(() => new FaultyBlockDevice({} as never)).toThrow(InvalidArgumentError);
  });
});

describe('@vde/test-harness entry point', () => {
  it('exports the error classes its runners throw, identical to @vde/block-device', async () => {
    const harness = await import('@vde/test-harness');
    const blockDevice = await import('@vde/block-device');
    for (const name of ['VdeError', 'InvalidArgumentError', 'ClosedError'] as const) expect(harness[name], name).toBe(blockDevice[name]);
  });
});
