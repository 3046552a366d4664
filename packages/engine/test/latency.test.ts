import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { bytes, checked, expectBytes, forwarding } from './helpers.js';

/** A device that counts the reads in flight (called, not yet settled) and remembers the most at once. */
function countingReads(inner: BlockDevice): { device: BlockDevice; maxReads: () => number; reset: () => void } {
  let reads = 0;
  let max = 0;
  const device = forwarding(inner, {
    read: (b, n) => {
      reads++;
      max = Math.max(max, reads);
      return inner.read(b, n).finally(() => reads--);
    },
  });
  return { device, maxReads: () => max, reset: () => (max = reads) };
}

const key = (i: number): string => `key${String(i).padStart(6, '0')}`;

describe('latency: the engine does not hold the event loop for work proportional to the data', () => {
  it('a batch whose index paths are not cached reads its pages 64 at a time, not all at once', async () => {
    const { device, maxReads, reset } = countingReads(new MemoryBlockDevice({ blockSize: 512 }));
    // 512-byte pages and the smallest cache: about 2,000 leaves, most of them not cached after a checkpoint.
    const vde = await VirtualDiskEngine.open(device, { walSizeBytes: 1 << 20, cacheSizeBytes: 64 * 1024 });
    for (let b = 0; b < 6000; b += 500) {
      await vde.batch(Array.from({ length: 500 }, (_, j) => ({ type: 'put' as const, key: key(b + j), data: bytes(60, b + j) })));
    }
    await vde.checkpoint();
    reset();
    // Every third key: each put's path is its own leaf, looked up by all the puts together.
    const keys = Array.from({ length: 2000 }, (_, i) => key(i * 3));
    await vde.batch(keys.map((k, i) => ({ type: 'put' as const, key: k, data: bytes(70, 100_000 + i) })));
    // Before: every put's page read was submitted in the same synchronous run (about 2,000 at once; with a file
    // device, 10,000 of them held the event loop 470-880 ms).
    expect(maxReads()).toBeLessThanOrEqual(64);
    for (let i = 0; i < 2000; i += 97) expectBytes(await vde.retrieve(key(i * 3)), bytes(70, 100_000 + i));
    expectBytes(await vde.retrieve(key(1)), bytes(60, 1));
    await checked(vde);
    await vde.close();
  });
});
