// A device that refuses to grow past some size (a full disk, a process file-size limit: EFBIG) that the engine does
// not know in advance, unlike maxSizeBytes. A burst of concurrent stores asks for one growth sized for all of them;
// when the device refuses it, the stores that still fit must go in, not all fail together.
import { describe, expect, it } from 'vitest';
import { type BlockDevice, FullError, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { bytes, checked, expectBytes, forwarding } from './helpers.js';

/**
 * `inner`, whose grow() fails with FullError (as ENOSPC/EFBIG do) past `cap.blocks` blocks, leaving it as it was.
 * Its close() leaves `inner` open, for a reopen.
 */
function capped(inner: MemoryBlockDevice, cap: { blocks: number }): { device: BlockDevice; refused: () => number } {
  let refused = 0;
  const device = forwarding(inner, {
    writeDurable: (b, d) => inner.writeDurable(b, d),
    async grow(n) {
      if (n > cap.blocks) {
        refused++;
        throw new FullError(`no space left on the device (growing to ${n} blocks, at most ${cap.blocks})`);
      }
      return inner.grow(n);
    },
    close: async () => undefined,
  });
  return { device, refused: () => refused };
}

describe('a device that refuses to grow (disk full, file-size limit)', () => {
  it('stores what fits of a concurrent burst instead of failing every store of it', async () => {
    const inner = new MemoryBlockDevice({ blockSize: 4096 });
    const walSizeBytes = 1 << 20;
    // Room for the log and metadata plus about 20 objects of 200 KB: a burst of 40 asks for twice that at once.
    const cap = { blocks: Infinity };
    const { device, refused } = capped(inner, cap);
    const vde = await VirtualDiskEngine.open(device, { walSizeBytes });
    cap.blocks = inner.blockCount + 1024 + 512;
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => vde.store(`o${i}`, bytes(200_000, i + 1))));
    const stored = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'ERR_VDE_FULL' });
    }
    expect(refused()).toBeGreaterThan(0);
    // Before: the one growth sized for all 40 was refused, and so were all 40 stores (0 stored).
    expect(stored.length).toBeGreaterThanOrEqual(15);
    for (const i of stored) expectBytes(await vde.retrieve(`o${i}`), bytes(200_000, i + 1));
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(device, { walSizeBytes });
    for (const i of stored) expectBytes(await again.retrieve(`o${i}`), bytes(200_000, i + 1));
    await checked(again);
    await again.close();
  });
});
