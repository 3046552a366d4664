import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VirtualDiskEngine } from '@vde/engine';
import { Reclaimer } from '../src/reclaimer.js';
import { SMALL, bytes, checked, tempDir } from './helpers.js';

describe('reopening under a named snapshot keeps no old meta blob (DESIGN.md invariant 4, no leak either)', () => {
  it('open/close cycles leave the held space as it was', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const opts = { ...SMALL, maxSizeBytes: 4 << 20 };
    let vde = await VirtualDiskEngine.open(path, opts);
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, bytes(20_000, i + 1));
    await vde.createSnapshot('s');
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, bytes(20_000, i + 100));
    await vde.close();
    vde = await VirtualDiskEngine.open(path, opts);
    const held = vde.stats().pendingFreeBlocks;
    const free = vde.stats().freeBlocks;
    // Each cycle (a CLI command is one) used to keep the previous checkpoint's meta blob for the snapshot: at
    // maxSizeBytes, after a few hundred of them every checkpoint and close() failed with ERR_VDE_FULL.
    for (let i = 0; i < 30; i++) {
      await vde.close();
      vde = await VirtualDiskEngine.open(path, opts);
    }
    expect(vde.stats().pendingFreeBlocks).toBe(held);
    expect(vde.stats().freeBlocks).toBeGreaterThanOrEqual(free);
    const snap = await vde.openSnapshot('s');
    expect(await snap.retrieve('k3')).toEqual(bytes(20_000, 4));
    await snap.close();
    expect(await vde.deleteSnapshot('s')).toBe(true);
    await checked(vde);
    await vde.close();
  });

  it('old meta blobs held for a read-only open across checkpoints are not held by a named snapshot after a reopen', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    let vde = await VirtualDiskEngine.open(path, SMALL);
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, bytes(20_000, i + 1));
    await vde.createSnapshot('s');
    await vde.close();
    vde = await VirtualDiskEngine.open(path, SMALL);
    const held = vde.stats().pendingFreeBlocks;
    // A read-only open holds every meta blob the writer replaces meanwhile; they were listed in the checkpoint as
    // deferred frees, and after a reopen the snapshot held them for good (its reads never need one).
    const reader = await VirtualDiskEngine.open(path, { readOnly: true });
    for (let i = 0; i < 10; i++) await vde.checkpoint();
    await vde.close();
    vde = await VirtualDiskEngine.open(path, SMALL);
    expect(await reader.retrieve('k15')).toEqual(bytes(20_000, 16));
    await reader.close();
    await vde.checkpoint();
    await vde.close();
    vde = await VirtualDiskEngine.open(path, SMALL);
    expect(vde.stats().pendingFreeBlocks).toBe(held);
    const snap = await vde.openSnapshot('s');
    expect(await snap.retrieve('k3')).toEqual(bytes(20_000, 4));
    await snap.close();
    await checked(vde);
    await vde.close();
  });

  it('a restored meta blob entry is withdrawn when a recovered record owns its blocks', () => {
    const r = new Reclaimer();
    const meta = { start: 50, count: 4, generation: 6 };
    r.restore([{ start: 10, count: 2, generation: 5 }, meta], meta);
    r.holdSnapshot(3);
    r.setExternalMin(-1); // a reader that has not told its mark: keep everything
    expect(r.takeEligible(8)).toEqual([]);
    expect(r.withdraw({ start: 51, count: 2 })).toEqual([{ start: 51, count: 2 }]);
    expect(r.pendingBlocks).toBe(4);
    r.setExternalMin(Infinity);
    // The meta blob is not held by the snapshot; the other entry is.
    expect(r.takeEligible(8)).toEqual([{ start: 50, count: 1 }, { start: 53, count: 1 }]);
    expect(r.pendingBlocks).toBe(2);
  });
});
