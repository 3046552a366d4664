// health() on a file system with no free space left (statfs mocked): a sparse container's holes are no free space.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { VirtualDiskEngine } from '@vde/engine';
import { bytes, checked, tempDir } from './helpers.js';

const disk = vi.hoisted(() => ({ full: false }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const statfs = (async (...args: Parameters<typeof actual.statfs>) => {
    const st = await actual.statfs(...args);
    return disk.full ? { ...st, bavail: 0, bfree: 0 } : st;
  }) as typeof actual.statfs;
  return { ...actual, statfs, default: { ...actual, statfs } };
});

afterEach(() => {
  disk.full = false;
});

describe('creating a container on a disk without room for its log', () => {
  it('is ERR_VDE_FULL before anything is written, and leaves no file', async () => {
    await using dir = await tempDir();
    const path = join(dir.dir, 'c.vde');
    disk.full = true;
    // Before: the log was written out (zeros) until the disk was full, then failed; a 2^40-byte walSizeBytes filled
    // a real disk. Now statfs is asked first.
    const err: unknown = await VirtualDiskEngine.open(path, { walSizeBytes: 4 << 20 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ERR_VDE_FULL' });
    expect((err as Error).message).toContain('walSizeBytes');
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    disk.full = false;
    const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 4 << 20 });
    await vde.store('k', bytes(10, 1));
    await checked(vde);
    await vde.close();
  });
});

describe('health() and the disk', () => {
  it('counts the holes of a sparse container as free only while the disk has room for them', async () => {
    await using dir = await tempDir();
    const vde = await VirtualDiskEngine.open(join(dir.dir, 'c.vde'), { walSizeBytes: 1 << 20 });
    // A growth of 25% (at least 256 blocks) past what the object takes: most of the file is a hole.
    await vde.store('big', bytes(3 << 20, 3));
    await vde.checkpoint();
    const roomy = await vde.health();
    disk.full = true;
    const full = await vde.health();
    // Before: capacity was the file size whatever the disk held, and freeBytes counted the holes (over 1 MiB here),
    // while every write into them would fail ENOSPC.
    expect(full.capacityBytes).toBeLessThan(roomy.containerBytes);
    expect(full.freeBytes).toBeLessThan(64 * 1024);
    expect(full.status).toBe('critical');
    expect(roomy.freeBytes).toBeGreaterThan(1 << 20);
    await checked(vde);
    await vde.close();
  });

  it('capacity under a maxSizeBytes that is not a multiple of the block size is whole blocks', async () => {
    await using dir = await tempDir();
    const vde = await VirtualDiskEngine.open(join(dir.dir, 'c.vde'), { walSizeBytes: 1 << 20, maxSizeBytes: (3 << 20) + 4095 });
    const h = await vde.health();
    expect(h.capacityBytes).toBe(3 << 20);
    expect(h.usedBytes + h.reservedBytes + h.freeBytes).toBe(3 << 20);
    await vde.close();
  });
});
