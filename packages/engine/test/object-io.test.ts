import { randomBytes } from 'node:crypto';
import { crc32 } from '@vde/block-device';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { CHECKSUM_SLICE_BYTES, ChecksumQueue } from '../src/object-io.js';
import { SMALL, bytes, checked, expectBytes, turnCounter } from './helpers.js';

describe('late checksums (objects of 256 KiB or more)', () => {
  it('are the CRC-32 of the whole object, for sizes around the slice boundaries, in the order asked', async () => {
    const q = new ChecksumQueue();
    const S = CHECKSUM_SLICE_BYTES;
    const sizes = [0, 1, S - 1, S, S + 1, 3 * S + 17, 12 * S];
    const datas = sizes.map((n) => randomBytes(n));
    const order: number[] = [];
    const got = await Promise.all(datas.map((d, i) => q.crc(d).then((c) => (order.push(i), c))));
    expect(got).toEqual(datas.map((d) => crc32(d)));
    expect(order).toEqual(sizes.map((_, i) => i));
  });

  it('yield to the event loop between slices, so I/O completions are handled while they run', async () => {
    const q = new ChecksumQueue();
    const data = randomBytes(16 * CHECKSUM_SLICE_BYTES);
    const counter = turnCounter();
    const crc = await q.crc(data);
    counter.stop();
    const turns = counter.turns();
    expect(crc).toBe(crc32(data));
    // One slice per turn: the other callback ran between them (16 slices; all at once it would have run once).
    expect(turns).toBeGreaterThanOrEqual(15);
  });

  it('a data write that fails while the checksum is computed fails the store (no unhandled rejection) and frees its blocks', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, SMALL);
    await vde.store('before', bytes(300_000, 1));
    // Room for the next store without growing, so that the failing write is one of its data writes.
    await vde.store('room', bytes(8 << 20, 9));
    await vde.delete('room');
    await vde.checkpoint();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      faulty.failAfter(1, 'EIO', { op: 'write' });
      const err = (await vde.store('big', bytes(4 << 20, 2)).catch((e: unknown) => e)) as Error & { code?: string };
      expect(err.code).toBe('ERR_VDE_IO');
      expect(err.message).toMatch(/^write of block/); // a data write failed, not the growth before it
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    // A failed data write is not a failed sync: nothing is poisoned, and the blocks went back to the allocator.
    await vde.store('after', bytes(300_000, 3));
    expectBytes(await vde.retrieve('before'), bytes(300_000, 1));
    expectBytes(await vde.retrieve('after'), bytes(300_000, 3));
    expect(await vde.exists('big')).toBe(false);
    await checked(vde);
    await vde.close();
  });
});
