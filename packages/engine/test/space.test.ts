import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type BlockDevice, MemoryBlockDevice, VdeError, VirtualDiskEngine } from '@vde/engine';
import { bytes, checked, expectBytes, memoryEngine } from './helpers.js';

/**
 * A container file on a file system that fills: the file grows sparse (a grown region is a hole), and a write
 * into a block that was never written needs disk space, of which there are `limit` blocks. A write that would
 * back more fails with ENOSPC, as `pwrite` does, and writes nothing.
 */
class SparseDisk implements BlockDevice {
  readonly inner: MemoryBlockDevice;
  readonly backed = new Set<number>();
  limit = Infinity;
  enospc = 0;
  constructor(blockSize: number) {
    this.inner = new MemoryBlockDevice({ blockSize });
  }
  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blockCount(): number {
    return this.inner.blockCount;
  }
  get readOnly(): boolean {
    return false;
  }
  read(blockNo: number, count: number): Promise<Uint8Array> {
    return this.inner.read(blockNo, count);
  }
  readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    return this.inner.readInto(blockNo, buffer);
  }
  async write(blockNo: number, data: Uint8Array): Promise<void> {
    const count = data.byteLength / this.blockSize;
    let fresh = 0;
    for (let b = blockNo; b < blockNo + count; b++) if (!this.backed.has(b)) fresh++;
    if (this.backed.size + fresh > this.limit) {
      this.enospc++;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    for (let b = blockNo; b < blockNo + count; b++) this.backed.add(b);
    await this.inner.write(blockNo, data);
  }
  sync(): Promise<void> {
    return this.inner.sync();
  }
  grow(blockCount: number): Promise<void> {
    return this.inner.grow(blockCount); // ftruncate: a hole, no space taken
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function code(err: unknown): string {
  return err instanceof VdeError ? err.code : String(err);
}

describe('space', () => {
  it('overwriting large objects (automatic checkpoints only) reuses space: the container stops growing', async () => {
    // 20 keys of 64 KiB (1.25 MiB live), overwritten 40 times: 50 MiB replaced, in log records of about 100 bytes,
    // far below the log's checkpoint threshold. Replaced blocks come back only with a checkpoint.
    const { device, vde } = await memoryEngine({ walSizeBytes: 4 << 20 });
    const sizes: number[] = [];
    for (let round = 0; round < 40; round++) {
      await Promise.all(Array.from({ length: 20 }, (_, k) => vde.store(`k${k}`, bytes(64 * 1024, round * 100 + k + 1))));
      sizes.push(device.blockCount * device.blockSize);
    }
    // Before: 62 MiB after 40 rounds, growing 25% at a time. Now it plateaus within a few rounds.
    expect(sizes[39]).toBeLessThan(16 << 20);
    expect(sizes[39]).toBe(sizes[19]);
    expectBytes(await vde.retrieve('k7'), bytes(64 * 1024, 39 * 100 + 8));
    await checked(vde);
    await vde.close();
  });

  it('a checkpoint that meets a full file system fails with ERR_VDE_FULL and poisons nothing; freeing disk space lets it go on', async () => {
    const disk = new SparseDisk(4096);
    let vde = await VirtualDiskEngine.open(disk, { walSizeBytes: 256 * 1024, cacheSizeBytes: 1 << 20 });
    disk.limit = disk.backed.size + 200; // 200 more blocks of disk space
    const acked = new Map<string, number>();
    let checkpointFull = 0;
    for (let i = 0; i < 400 && checkpointFull === 0; i++) {
      try {
        await vde.store(`key-${String(i).padStart(4, '0')}`, bytes(100 + (i % 7) * 2000, i + 1));
        acked.set(`key-${String(i).padStart(4, '0')}`, i);
      } catch (err) {
        expect(code(err)).toBe('ERR_VDE_FULL');
      }
      if (i % 10 === 9) {
        try {
          await vde.checkpoint();
        } catch (err) {
          expect(code(err)).toBe('ERR_VDE_FULL');
          checkpointFull++;
        }
      }
    }
    expect(checkpointFull).toBe(1);
    expect(disk.enospc).toBeGreaterThan(0);
    // Before: the checkpoint's ENOSPC poisoned the engine (ERR_VDE_POISONED until reopen).
    expect((await vde.health()).poisoned).toBe(false);
    for (const [key, i] of acked) expectBytes(await vde.retrieve(key), bytes(100 + (i % 7) * 2000, i + 1));
    // Reopen on the still-full disk: the open's own checkpoint fails for lack of space, and the open goes on.
    await vde.close().catch((err: unknown) => expect(code(err)).toBe('ERR_VDE_FULL'));
    vde = await VirtualDiskEngine.open(disk, { walSizeBytes: 256 * 1024, cacheSizeBytes: 1 << 20 });
    for (const [key, i] of acked) expectBytes(await vde.retrieve(key), bytes(100 + (i % 7) * 2000, i + 1));
    // Space freed outside: the same engine checkpoints and stores again.
    disk.limit = Infinity;
    await vde.checkpoint();
    await vde.store('after', bytes(10_000, 7));
    expectBytes(await vde.retrieve('after'), bytes(10_000, 7));
    await checked(vde);
    expect((await vde.scrub()).ok).toBe(true);
    await vde.close();
    vde = await VirtualDiskEngine.open(disk, { walSizeBytes: 256 * 1024, cacheSizeBytes: 1 << 20 });
    expect(vde.stats().objects).toBe(acked.size + 1);
    await checked(vde);
    await vde.close();
  });

  it('at maxSizeBytes with scattered free space, deletes and checkpoints keep working (the meta blob keeps a run)', async () => {
    // 512-byte blocks: the meta blob of a 3 MiB container is a few blocks plus 20 bytes per deferred extent, and it
    // must be one contiguous run. Interleaved objects of 2 and 3 blocks fill the container; deleting every other one
    // frees single runs of 2 only after a checkpoint, while each delete adds an entry to the meta blob.
    const opts = { blockSize: 512, walSizeBytes: 64 << 10, cacheSizeBytes: 1 << 20, maxSizeBytes: 3 << 20 };
    const device = new SparseDisk(512); // a disk with room: close() leaves it open for the reopen below
    const vde = await VirtualDiskEngine.open(device, opts);
    const key = (i: number): string => `obj-${String(i).padStart(5, '0')}`;
    let n = 0;
    for (let full = 0; full < 3; n++) {
      try {
        await vde.store(key(n), bytes(n % 2 ? 600 : 1400, n + 1));
        full = 0;
      } catch (err) {
        expect(code(err)).toBe('ERR_VDE_FULL');
        full++;
      }
    }
    expect(device.blockCount).toBe((3 << 20) / 512);
    // Before: after about 940 of these deletes, a delete and every checkpoint failed ERR_VDE_FULL for good
    // (the longest free run was 8 blocks, the meta blob needed 20), and so did close().
    let deleted = 0;
    for (let i = 1; i < n; i += 2) if (await vde.delete(key(i))) deleted++;
    expect(deleted).toBeGreaterThan(1000);
    await vde.checkpoint();
    expect((await vde.health()).poisoned).toBe(false);
    // The space came back: most of the deleted objects fit again (the index's reserve keeps some back).
    let restored = 0;
    for (let i = 1; i < n; i += 2) {
      try {
        await vde.store(key(i), bytes(600, i + 1));
        restored++;
      } catch (err) {
        expect(code(err)).toBe('ERR_VDE_FULL');
      }
    }
    expect(restored).toBeGreaterThan(deleted * 0.8);
    await vde.checkpoint();
    for (let i = 0; i < n; i++) if (await vde.exists(key(i))) expectBytes(await vde.retrieve(key(i)), bytes(i % 2 ? 600 : 1400, i + 1));
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(device, opts);
    await checked(again);
    await again.close();
  });

  it('at maxSizeBytes, deleting objects lets the next stores in without a manual checkpoint', async () => {
    const { vde } = await memoryEngine({ walSizeBytes: 256 << 10, maxSizeBytes: 8 << 20 });
    let n = 0;
    for (;; n++) {
      try {
        await vde.store(`k${n}`, bytes(512 << 10, n + 1));
      } catch (err) {
        expect(code(err)).toBe('ERR_VDE_FULL');
        break;
      }
    }
    expect(n).toBeGreaterThan(8);
    await vde.checkpoint();
    for (let i = 0; i < n / 2; i++) await vde.delete(`k${i}`);
    // Before: every one of these was ERR_VDE_FULL until the caller ran checkpoint() (a stream too).
    await vde.store('new-0', bytes(512 << 10, 100));
    await vde.store('new-1', Readable.from([bytes(300 << 10, 101), bytes(212 << 10, 102)]));
    for (let t = 2; t < 5; t++) await vde.store(`new-${t}`, bytes(512 << 10, 100 + t));
    expectBytes(await vde.retrieve('new-4'), bytes(512 << 10, 104));
    expectBytes(await vde.retrieve(`k${n - 1}`), bytes(512 << 10, n));
    await checked(vde);
    await vde.close();
  });

  it('check() on an engine poisoned by a failed checkpoint says so instead of reporting corruption', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, { walSizeBytes: 256 * 1024, cacheSizeBytes: 256 * 1024 });
    for (let i = 0; i < 50; i++) await vde.store(`k${i}`, bytes(9000, i + 1));
    await vde.checkpoint();
    for (let i = 0; i < 50; i++) await vde.store(`k${i}`, bytes(9000, i + 2));
    faulty.failAfter(1, 'EIO', { op: 'sync' });
    await expect(vde.checkpoint()).rejects.toMatchObject({ code: 'ERR_VDE_IO' });
    // Before: ERR_VDE_CORRUPT "block 69 belongs to both the checkpoint meta blob and the deferred-free list".
    await expect(vde.check()).rejects.toMatchObject({ code: 'ERR_VDE_POISONED' });
    faulty.clearFaults();
    await vde.close().catch(() => undefined);
    const reopened = await VirtualDiskEngine.open(faulty.powerCut({ seed: 1, mode: 'keep-all' }), { walSizeBytes: 256 * 1024 });
    for (let i = 0; i < 50; i += 7) expectBytes(await reopened.retrieve(`k${i}`), bytes(9000, i + 2));
    await checked(reopened);
    await reopened.close();
  });

  it('at maxSizeBytes, deleting inline objects lets the next inline stores in without a manual checkpoint', async () => {
    const { vde } = await memoryEngine({ walSizeBytes: 1 << 20, maxSizeBytes: 4 << 20, cacheSizeBytes: 1 << 20 });
    const key = (i: number): string => `key-${String(i).padStart(7, '0')}-${'x'.repeat(200)}`;
    let n = 0;
    for (;; n++) {
      try {
        await vde.store(key(n), bytes(900, n + 1)); // inline: no data blocks, index pages only
      } catch (err) {
        expect(code(err)).toBe('ERR_VDE_FULL');
        break;
      }
    }
    for (let i = 0; i < n; i += 2) await vde.delete(key(i));
    // Before: ERR_VDE_FULL for every one until the caller ran checkpoint() (the reserve counts the dirty pages the
    // deletes left twice, and only a checkpoint flushes them).
    for (let t = 0; t < 20; t++) await vde.store(`new-${t}`, bytes(900, 1000 + t));
    expectBytes(await vde.retrieve('new-19'), bytes(900, 1019));
    expectBytes(await vde.retrieve(key(1)), bytes(900, 2));
    await checked(vde);
    await vde.close();
  });
});
