import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { bytes, checked, expectBytes, forwarding } from './helpers.js';

/** A device that counts the reads in flight (called, not yet settled) and remembers the most at once. */
function countingReads(inner: BlockDevice): { device: BlockDevice; maxReads: () => number; reset: () => void } {
  let reads = 0;
  let max = 0;
  const counted = <T>(p: () => Promise<T>): Promise<T> => {
    reads++;
    max = Math.max(max, reads);
    return p().finally(() => reads--);
  };
  const device = forwarding(inner, {
    read: (b, n) => counted(() => inner.read(b, n)),
    readInto: (b, buf) => counted(() => inner.readInto(b, buf)),
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

  it('concurrent retrieves and read streams of objects in blocks read at most 64 at a time', async () => {
    const { device, maxReads, reset } = countingReads(new MemoryBlockDevice({ blockSize: 1024 }));
    const vde = await VirtualDiskEngine.open(device, { walSizeBytes: 4 << 20 });
    for (let b = 0; b < 2000; b += 250) {
      await vde.batch(Array.from({ length: 250 }, (_, j) => ({ type: 'put' as const, key: key(b + j), data: bytes(3000, b + j) })));
    }
    await vde.checkpoint();
    for (let i = 0; i < 2000; i += 500) await vde.exists(key(i)); // (the index is cached: only data is read below)
    reset();
    // Before: all 2,000 data reads were submitted in the synchronous run that started the retrieves (with a file
    // device, 10,000 retrieves of 8 KiB objects held the event loop 810-900 ms).
    const got = await Promise.all(Array.from({ length: 2000 }, (_, i) => vde.retrieve(key(i))));
    expect(maxReads()).toBeLessThanOrEqual(64);
    for (let i = 0; i < 2000; i += 111) expectBytes(got[i]!, bytes(3000, i));
    reset();
    const streamed = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const chunks: Uint8Array[] = [];
        for await (const c of vde.createReadStream(key(i))) chunks.push(c as Uint8Array);
        return Buffer.concat(chunks);
      }),
    );
    expect(maxReads()).toBeLessThanOrEqual(64);
    for (let i = 0; i < 200; i += 37) expectBytes(streamed[i]!, bytes(3000, i));
    await checked(vde);
    await vde.close();
  });

  it('a checkpoint frees the pages that the one before it replaced in slices, letting the event loop turn', async () => {
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 512 }), { walSizeBytes: 16 << 20, cacheSizeBytes: 64 << 20 });
    const n = 60_000;
    const fill = async (seed: number): Promise<void> => {
      for (let b = 0; b < n; b += 1000) {
        await vde.batch(Array.from({ length: 1000 }, (_, j) => ({ type: 'put' as const, key: key(b + j), data: bytes(30, seed + b + j) })));
      }
    };
    await fill(0);
    await vde.checkpoint();
    // Every leaf changes: the next checkpoint writes them all elsewhere and frees where they were.
    await fill(1_000_000);
    const leaves = vde.stats().index.dirtyPages;
    expect(leaves).toBeGreaterThan(8000);
    expect(vde.stats().checkpoints).toBe(2); // (the first is the container's creation: no automatic one ran)
    const samples: number[] = [];
    let done = false;
    const sample = (): void => {
      if (done) return;
      samples.push(vde.stats().freeBlocks);
      setImmediate(sample);
    };
    setImmediate(sample);
    await vde.checkpoint();
    samples.push(vde.stats().freeBlocks);
    done = true;
    let rises = 0;
    for (let i = 1; i < samples.length; i++) if (samples[i]! > samples[i - 1]!) rises++;
    // Before: every one of them freed in the same synchronous run (one rise at most). Now 2,048 per turn.
    expect(rises).toBeGreaterThanOrEqual(Math.floor(leaves / 2048) - 1);
    for (let i = 0; i < n; i += 997) expectBytes(await vde.retrieve(key(i)), bytes(30, 1_000_000 + i));
    await checked(vde);
    await vde.close();
  });
});
