import { describe, expect, it } from 'vitest';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { FaultyBlockDevice } from '@vde/test-harness';
import { SMALL, bytes, checked, expectBytes, expectCode } from './helpers.js';

const RELAXED = { ...SMALL, durability: 'relaxed' as const };

/** Small and large stores, a batch and a delete, all with durability 'relaxed'; returns what must be there. */
async function relaxedWrites(vde: VirtualDiskEngine): Promise<Map<string, Uint8Array | undefined>> {
  const expected = new Map<string, Uint8Array | undefined>();
  for (let i = 0; i < 20; i++) {
    const v = bytes(i % 2 === 0 ? 100 : 20_000, i + 1);
    await vde.store(`s${i}`, v);
    expected.set(`s${i}`, v);
  }
  const puts = Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `b${i}`, data: bytes(64, 100 + i) }));
  await vde.batch(puts);
  for (const p of puts) expected.set(p.key, p.data);
  await vde.delete('s3');
  expected.set('s3', undefined);
  return expected;
}

async function expectState(vde: VirtualDiskEngine, expected: Map<string, Uint8Array | undefined>): Promise<void> {
  for (const [key, value] of expected) {
    if (value === undefined) expect(await vde.exists(key)).toBe(false);
    else expectBytes(await vde.retrieve(key), value);
  }
}

describe('sync(): relaxed writes made durable without a checkpoint', () => {
  for (const [seed, mode] of [[1, 'drop-all'], [2, 'random'], [3, 'random']] as const) {
    it(`everything resolved before sync() survives a power cut that drops unsynced writes (${mode}, seed ${seed})`, async () => {
      const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
      const vde = await VirtualDiskEngine.open(faulty, RELAXED);
      await vde.store('before', 'x');
      await vde.checkpoint();
      const expected = await relaxedWrites(vde);
      const checkpoints = vde.stats().checkpoints;
      await vde.sync();
      expect(vde.stats().checkpoints).toBe(checkpoints); // a log fsync, not a checkpoint
      await checked(vde);
      const crashed = await VirtualDiskEngine.open(faulty.powerCut({ seed, mode }), SMALL);
      await expectState(crashed, expected);
      await checked(crashed);
      await crashed.close();
      await vde.close().catch(() => undefined); // its device lost power
    });
  }

  it('without it, the same relaxed writes are lost by that power cut (the test above is not vacuous)', async () => {
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, RELAXED);
    await vde.store('before', 'x');
    await vde.checkpoint();
    await relaxedWrites(vde);
    const crashed = await VirtualDiskEngine.open(faulty.powerCut({ seed: 1, mode: 'drop-all' }), SMALL);
    expect(await crashed.exists('s0')).toBe(false);
    expect(await crashed.exists('b0')).toBe(false);
    expect(await crashed.exists('s3')).toBe(false); // nor was s3 ever there: the store and its delete went
    expect(new TextDecoder().decode(await crashed.retrieve('before'))).toBe('x');
    await checked(crashed);
    await crashed.close();
    await vde.close().catch(() => undefined); // its device lost power
  });

  it('covers what resolved before it while other writers go on', async () => {
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, RELAXED);
    // Concurrent stores and syncs: each sync covers what resolved before it.
    const done: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        await vde.store(`c${i}`, bytes(200, i));
        await vde.sync();
        done.push(`c${i}`);
      }),
    );
    const crashed = await VirtualDiskEngine.open(faulty.powerCut({ seed: 4, mode: 'drop-all' }), SMALL);
    for (const key of done) expect(await crashed.exists(key)).toBe(true);
    await checked(crashed);
    await crashed.close();
    await vde.close().catch(() => undefined);
  });

  it('is refused after a failed fsync (poisoned), closed and read-only; with durability sync it adds nothing', async () => {
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, RELAXED);
    faulty.failAfter(1, 'EIO', { op: 'sync' });
    await vde.store('lost?', 'y'); // relaxed: resolves after the write
    await expectCode(vde.sync(), 'ERR_VDE_IO');
    await expectCode(vde.sync(), 'ERR_VDE_POISONED');
    await expectCode(vde.store('after', 'z'), 'ERR_VDE_POISONED');
    faulty.clearFaults();
    await vde.close().catch(() => undefined);
    await expectCode(vde.sync(), 'ERR_VDE_CLOSED');

    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const durable = await VirtualDiskEngine.open(device, SMALL);
    await durable.store('k', 'v');
    await durable.sync(); // nothing to add: durability 'sync' resolved after the fsync
    await checked(durable);
    await durable.close();
    const ro = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 4096, { readOnly: true }), { ...SMALL, readOnly: true });
    await expectCode(ro.sync(), 'ERR_VDE_READ_ONLY');
    await ro.close();
  });
});
