// Scale and resource bounds found by a review that ran the engine on large containers (fifth review).
import { describe, expect, it } from 'vitest';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { SMALL, checked, expectCode } from './helpers.js';

/** A memory device that counts its reads and can run a hook before each. */
class CountingDevice extends MemoryBlockDevice {
  reads = 0;
  onRead: (() => void) | undefined;
  override async read(blockNo: number, count: number): Promise<Uint8Array> {
    this.reads++;
    this.onRead?.();
    return await super.read(blockNo, count);
  }
  override async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    this.reads++;
    this.onRead?.();
    await super.readInto(blockNo, buffer);
  }
}

describe('scrub abort', () => {
  it('an abort during the index check stops the scrub at once, not after every index page is read', async () => {
    // The index check of a 2-million-key container read its ~45,000 pages for 5 s after the abort.
    const device = new CountingDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, durability: 'relaxed' });
    for (let i = 0; i < 20_000; i += 1000) {
      const ops = [];
      for (let j = i; j < i + 1000; j++) ops.push({ type: 'put' as const, key: `key/${String(j).padStart(8, '0')}`, data: `v${j}` });
      await vde.batch(ops);
    }
    await vde.checkpoint();
    const ac = new AbortController();
    let readsAtAbort = -1;
    // The scrub's own checkpoint writes; its index check then reads the point-in-time tree page by page.
    device.onRead = () => {
      if (readsAtAbort < 0) {
        readsAtAbort = device.reads;
        ac.abort();
      }
    };
    await expectCode(vde.scrub({ signal: ac.signal }), 'ERR_VDE_ABORTED');
    device.onRead = undefined;
    expect(readsAtAbort).toBeGreaterThan(0);
    expect(device.reads - readsAtAbort).toBeLessThan(4);
    expect((await vde.health()).checksumErrors).toBe(0);
    expect((await vde.scrub()).ok).toBe(true);
    await checked(vde);
    await vde.close();
  });
});
