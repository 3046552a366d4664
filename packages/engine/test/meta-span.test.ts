import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { CuttingDevice, FaultyBlockDevice } from '@vde/test-harness';
import { SMALL, bytes, checked, expectBytes, expectCode, tempDir } from './helpers.js';

const BS = 512;
const OPTS = { ...SMALL, blockSize: BS, maxSizeBytes: 2 << 20 };

const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const u64 = (b: Uint8Array, at: number): number => u32(b, at) + u32(b, at + 4) * 2 ** 32;

/** The newest superblock of a container file and the runs of its meta blob (FORMAT.md, "Meta blob, version 2"). */
async function metaLayout(path: string): Promise<{ version: number; length: number; runs: { start: number; count: number }[] }> {
  const file = await readFile(path);
  const supers = [0, BS].map((at) => ({
    version: u32(file, at + 8),
    generation: u64(file, at + 16),
    start: u64(file, at + 64),
    count: u32(file, at + 72),
    length: u32(file, at + 76),
  }));
  const sb = supers[0]!.generation > supers[1]!.generation ? supers[0]! : supers[1]!;
  const runs = [{ start: sb.start, count: sb.count }];
  const first = file.subarray(sb.start * BS, (sb.start + sb.count) * BS);
  expect(u32(first, 0)).toBe(0x4d454456); // "VDEM"
  expect(u32(first, 4)).toBe(sb.version); // the blob's version is the superblock's
  if (sb.version === 2) {
    // The list continues in the runs it lists: the logical blob is built run after run.
    const e = u32(first, 8);
    let logical = Buffer.from(first);
    for (let i = 0; i < e; i++) {
      const at = 12 + 12 * i;
      expect(at + 12).toBeLessThanOrEqual(logical.byteLength);
      const run = { start: u64(logical, at), count: u32(logical, at + 8) };
      runs.push(run);
      logical = Buffer.concat([logical, file.subarray(run.start * BS, (run.start + run.count) * BS)]);
    }
  }
  return { version: sb.version, length: sb.length, runs };
}

/**
 * A container whose free space is only 1-block holes: 1-block objects up to the limit, every other one deleted,
 * the rest of the free space (the store reserve's run) eaten by 2-block objects. Any meta blob (the bitmap alone is
 * 512 bytes with the header) then needs two blocks, and no two free blocks are adjacent.
 */
async function fragmented(target: string | BlockDevice, opts = OPTS): Promise<{ vde: VirtualDiskEngine; kept: Map<string, Uint8Array> }> {
  const vde = await VirtualDiskEngine.open(target, opts);
  const kept = new Map<string, Uint8Array>();
  /** Stores `prefix`NNNNN objects of `size` bytes until ERR_VDE_FULL; how many went in. */
  const fill = async (prefix: string, size: number, seed: number): Promise<number> => {
    for (let i = 0; ; i++) {
      const value = bytes(size, i + seed);
      try {
        await vde.store(`${prefix}${String(i).padStart(5, '0')}`, value);
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ERR_VDE_FULL');
        return i;
      }
      kept.set(`${prefix}${String(i).padStart(5, '0')}`, value);
    }
  };
  const n = await fill('a', 300, 1);
  expect(n).toBeGreaterThan(1000);
  for (let i = 0; i < n; i += 2) {
    const key = `a${String(i).padStart(5, '0')}`;
    expect(await vde.delete(key)).toBe(true);
    kept.delete(key);
  }
  await vde.checkpoint();
  await fill('b', 700, 50_000);
  return { vde, kept };
}

async function expectAll(vde: VirtualDiskEngine, kept: Map<string, Uint8Array>): Promise<void> {
  for (const [key, value] of kept) expectBytes(await vde.retrieve(key), value);
  expect(vde.stats().objects).toBe(kept.size);
}

describe('a meta blob spans several runs when free space is in pieces (FORMAT.md, "Meta blob, version 2")', () => {
  it('checkpoint, close and reopen work when no free run holds the meta blob, and the blob spans', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const made = await fragmented(path);
    let vde = made.vde;
    const kept = made.kept;
    // A named snapshot and deletes under it: their entries grow the blob, and the snapshot holds their blocks.
    await vde.createSnapshot('s');
    let deleted = 0;
    for (const key of [...kept.keys()].filter((k) => k.startsWith('a')).slice(0, 150)) {
      await vde.delete(key);
      kept.delete(key);
      deleted++;
    }
    expect(deleted).toBe(150);
    await vde.checkpoint();
    const layout = await metaLayout(path);
    expect(layout.version).toBe(2);
    expect(layout.runs.length).toBeGreaterThan(1);
    expect(layout.length).toBeGreaterThan(layout.runs[0]!.count * BS);
    await checked(vde);
    await vde.close();
    // The close's checkpoint replaced a spanning blob: it is version 2 too (it lists that blob's runs).
    expect((await metaLayout(path)).version).toBe(2);

    vde = await VirtualDiskEngine.open(path, OPTS);
    await expectAll(vde, kept);
    expect(vde.listSnapshots().map((s) => s.name)).toEqual(['s']);
    const snap = await vde.openSnapshot('s');
    expect((await snap.stat('a00001')).size).toBe(300);
    await snap.close();
    expect(await vde.deleteSnapshot('s')).toBe(true);
    await checked(vde);
    await vde.close();
    vde = await VirtualDiskEngine.open(path, OPTS);
    await expectAll(vde, kept);
    await checked(vde);
    await vde.close();
  });

  it('a blob over more holes than one block can list reads back (the extent list continues run after run)', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const opts = { ...OPTS, maxSizeBytes: 4 << 20 };
    const { vde, kept } = await fragmented(path, opts);
    await vde.createSnapshot('s');
    // Deletes under the snapshot until refused: about 1,800 entries, a blob of about 100 single-block holes, whose
    // list (12 bytes an extent) no longer fits its first block. It was ERR_VDE_FULL after the flush (poisoned).
    for (const key of [...kept.keys()].filter((k) => k.startsWith('a'))) {
      try {
        await vde.delete(key);
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ERR_VDE_FULL');
        break;
      }
      kept.delete(key);
    }
    await vde.checkpoint();
    const layout = await metaLayout(path);
    expect(layout.version).toBe(2);
    expect(layout.runs.length - 1).toBeGreaterThan((BS - 12) / 12);
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(path, opts);
    await expectAll(again, kept);
    expect(await again.deleteSnapshot('s')).toBe(true);
    await again.store('after', bytes(3000, 3));
    await checked(again);
    await again.close();
  });

  it('open/close cycles under a named snapshot with a spanning blob do not grow the used blocks', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const made = await fragmented(path);
    let vde = made.vde;
    const kept = made.kept;
    await vde.createSnapshot('s');
    for (const key of [...kept.keys()].filter((k) => k.startsWith('a')).slice(0, 100)) {
      await vde.delete(key);
      kept.delete(key);
    }
    await vde.close();
    expect((await metaLayout(path)).version).toBe(2);
    vde = await VirtualDiskEngine.open(path, OPTS);
    // One cycle first: the blob then lists one run more of the (spanning) blob it replaced, which may take a block
    // more. From there, each cycle must leave the space as it was (a leak would grow with every cycle).
    await vde.close();
    vde = await VirtualDiskEngine.open(path, OPTS);
    const free = vde.stats().freeBlocks;
    const held = vde.stats().pendingFreeBlocks;
    for (let i = 0; i < 20; i++) {
      await vde.close();
      vde = await VirtualDiskEngine.open(path, OPTS);
    }
    expect(vde.stats().freeBlocks).toBeGreaterThanOrEqual(free);
    expect(vde.stats().pendingFreeBlocks).toBe(held);
    expect((await metaLayout(path)).version).toBe(2);
    await expectAll(vde, kept);
    await checked(vde);
    await vde.close();
  });

  it('a flipped bit in a continuation extent of a spanning blob is ERR_VDE_CORRUPT at open', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const { vde, kept } = await fragmented(path);
    await vde.createSnapshot('s');
    for (const key of [...kept.keys()].filter((k) => k.startsWith('a')).slice(0, 100)) await vde.delete(key);
    await checked(vde);
    await vde.close();
    const layout = await metaLayout(path);
    expect(layout.version).toBe(2);
    // The first byte of the second run is inside the blob's length.
    expect(layout.runs[0]!.count * BS).toBeLessThan(layout.length);
    for (const offset of [0, 17, BS - 1]) {
      const at = layout.runs[1]!.start * BS + offset;
      const fh = await open(path, 'r+');
      const one = new Uint8Array(1);
      await fh.read(one, 0, 1, at);
      one[0] = one[0]! ^ 0x10;
      await fh.write(one, 0, 1, at);
      await fh.close();
      await expectCode(VirtualDiskEngine.open(path, OPTS), 'ERR_VDE_CORRUPT');
      await expectCode(VirtualDiskEngine.open(path, { readOnly: true }), 'ERR_VDE_CORRUPT');
      // Repaired, it opens and reads again.
      const fix = await open(path, 'r+');
      one[0] = one[0] ^ 0x10;
      await fix.write(one, 0, 1, at);
      await fix.close();
    }
    const again = await VirtualDiskEngine.open(path, OPTS);
    await checked(again);
    await again.close();
  });

  it('a continuation extent that points outside the container is ERR_VDE_CORRUPT, never a raw error', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const { vde } = await fragmented(path);
    await vde.createSnapshot('s');
    await checked(vde);
    await vde.close();
    const layout = await metaLayout(path);
    expect(layout.version).toBe(2);
    // Extent 1's start (bytes 12..19 of the first run) moved past the end of the file.
    const fh = await open(path, 'r+');
    const far = new Uint8Array(8);
    new DataView(far.buffer).setUint32(0, 0x7fffffff, true);
    // And an extent count far beyond what the blob's length holds (bytes 8..11).
    const many = new Uint8Array(4);
    new DataView(many.buffer).setUint32(0, 0xfffffff0, true);
    const cases: [number, Uint8Array][] = [
      [12, far],
      [8, many],
    ];
    const saved = new Uint8Array(12);
    await fh.read(saved, 0, 12, layout.runs[0]!.start * BS + 8);
    for (const [offset, bad] of cases) {
      await fh.write(saved, 0, 12, layout.runs[0]!.start * BS + 8);
      await fh.write(bad, 0, bad.byteLength, layout.runs[0]!.start * BS + offset);
      await fh.sync();
      await expectCode(VirtualDiskEngine.open(path, OPTS), 'ERR_VDE_CORRUPT');
    }
    await fh.close();
  });

  it('a container that never needed spanning keeps writing version 1 (the previous release reads it)', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const vde = await VirtualDiskEngine.open(path, OPTS);
    for (let i = 0; i < 200; i++) await vde.store(`k${i}`, bytes(300, i + 1));
    await vde.createSnapshot('s');
    for (let i = 0; i < 200; i += 2) await vde.delete(`k${i}`);
    await vde.checkpoint();
    expect((await metaLayout(path)).version).toBe(1);
    await checked(vde);
    await vde.close();
    expect((await metaLayout(path)).version).toBe(1);
  });
});

/** A copy of a memory device's blocks. */
async function copyOf(dev: MemoryBlockDevice): Promise<MemoryBlockDevice> {
  const out = new MemoryBlockDevice({ blockSize: dev.blockSize });
  await out.grow(dev.blockCount);
  await out.write(0, await dev.read(0, dev.blockCount));
  return out;
}

describe('a power cut while a spanning meta blob is written', () => {
  it('recovers every acknowledged delete and the snapshot, at every cut point tried', async () => {
    const setupBase = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: BS }));
    const { vde: setup, kept } = await fragmented(new CuttingDevice(setupBase, Infinity, 1));
    await setup.createSnapshot('s');
    await setup.close();
    const clean = setupBase.powerCut({ seed: 1 }); // everything was synced by close: the image is the container
    const victims = [...kept.keys()].filter((k) => k.startsWith('a')).slice(0, 60);
    let spanned = 0;
    for (const cutAt of [1, 2, 3, 5, 8, 13, 21, 34, 55, 70, 90]) {
      const base = new FaultyBlockDevice(await copyOf(clean));
      const dev = new CuttingDevice(base, cutAt, cutAt);
      const deleted = new Set<string>();
      let inFlight: string | undefined;
      const vde = await VirtualDiskEngine.open(dev, OPTS).catch(() => undefined);
      if (vde) {
        try {
          for (const key of victims) {
            inFlight = key;
            await vde.delete(key);
            deleted.add(key);
            inFlight = undefined;
            if (deleted.size % 20 === 0) await vde.checkpoint();
          }
          await vde.checkpoint();
        } catch {
          // the power is gone (or the engine refused after the failure)
        }
        await vde.close().catch(() => undefined);
      }
      const image = dev.image ?? base.powerCut({ seed: cutAt });
      const head = await image.read(0, 2);
      if (u32(head, 8) === 2 || u32(head, BS + 8) === 2) spanned++;
      const recovered = await VirtualDiskEngine.open(image, OPTS);
      for (const [key, value] of kept) {
        if (deleted.has(key)) expect(await recovered.exists(key), `cut ${cutAt}: ${key} was deleted`).toBe(false);
        else if (key !== inFlight) expectBytes(await recovered.retrieve(key), value);
      }
      expect(recovered.listSnapshots().map((x) => x.name)).toEqual(['s']);
      await checked(recovered);
      await recovered.close();
    }
    // The cuts after the first checkpoints left spanning blobs on disk (the point of this test).
    expect(spanned).toBeGreaterThan(3);
  });
});

describe('there is always room for the checkpoint that deletes every named snapshot', () => {
  /**
   * 64 writers of stores, deletes and batches at a 4 MiB limit with 512-byte blocks, a named snapshot held through
   * the second half. Every checkpoint, deleteSnapshot(), delete and close() failed ERR_VDE_FULL there, also after
   * every reopen (9 seeds of 10): the free space was in holes no meta blob run fitted, or used up by deletes and
   * stores that counted the meta blob without its deferred entries.
   */
  it.each([3, 4, 5, 6])('64 writers under a named snapshot, seed %i: deleteSnapshot, checkpoint, delete, close and reopen work', async (seed0) => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const opts = { blockSize: BS, maxSizeBytes: 4 << 20 };
    let seed = seed0;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const key = (i: number): string => String(i).padStart(8, '0');
    let vde = await VirtualDiskEngine.open(path, opts);
    const other: unknown[] = [];
    const writer = async (n: number): Promise<void> => {
      for (let j = 0; j < n; j++) {
        const k = key(Math.floor(rnd() * 3000));
        const r = rnd();
        try {
          if (r < 0.6) await vde.store(k, new Uint8Array(rnd() < 0.8 ? Math.floor(rnd() * 300) : Math.floor(rnd() * 30000)));
          else if (r < 0.75) {
            const ops: ({ type: 'put'; key: string; data: Uint8Array } | { type: 'del'; key: string })[] = [];
            for (let q = 0; q < 6; q++) {
              const kk = key(Math.floor(rnd() * 3000));
              if (ops.some((o) => o.key === kk)) continue;
              ops.push(rnd() < 0.5 ? { type: 'put', key: kk, data: new Uint8Array(60) } : { type: 'del', key: kk });
            }
            await vde.batch(ops);
          } else await vde.delete(k);
        } catch (err) {
          if ((err as { code?: string }).code !== 'ERR_VDE_FULL') other.push(err);
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, () => writer(40)));
    await vde.createSnapshot('s');
    await Promise.all(Array.from({ length: 64 }, () => writer(80)));
    expect(other).toEqual([]);
    await vde.checkpoint();
    expect(await vde.deleteSnapshot('s')).toBe(true);
    await vde.checkpoint();
    await checked(vde);
    await vde.close();
    vde = await VirtualDiskEngine.open(path, opts);
    for (let i = 0; i < 3000; i += 2) await vde.delete(key(i));
    await vde.store('after', bytes(5000, 7));
    await vde.checkpoint();
    await checked(vde);
    await vde.close();
    vde = await VirtualDiskEngine.open(path, opts);
    expectBytes(await vde.retrieve('after'), bytes(5000, 7));
    await checked(vde);
    await vde.close();
  });
});

describe('concurrent batches of deletes under a named snapshot leave room for the checkpoint that deletes it', () => {
  /**
   * 64 batches of 37 deletes at once, at a 4 MiB limit with 512-byte blocks, free space in 1-block holes, a named
   * snapshot held. Each batch checked the room for the next checkpoint with the others in flight counted as 3 meta
   * blob entries each (one delete's): they passed together, and then every checkpoint, deleteSnapshot() and close()
   * failed ERR_VDE_FULL, also after reopening.
   */
  it('checkpoint, deleteSnapshot and close work after 64 concurrent batches of deletes were refused', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const opts = { ...OPTS, maxSizeBytes: 4 << 20 };
    const { vde, kept } = await fragmented(path, opts);
    await vde.createSnapshot('s');
    const victims = [...kept.keys()].filter((k) => k.startsWith('a'));
    let next = 0;
    let refused = 0;
    const other: unknown[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < victims.length && refused === 0) {
          const keys = victims.slice(next, next + 37);
          next += 37;
          try {
            await vde.batch(keys.map((key) => ({ type: 'del' as const, key })));
            for (const key of keys) kept.delete(key);
          } catch (err) {
            if ((err as { code?: string }).code === 'ERR_VDE_FULL') refused++;
            else other.push(err);
          }
        }
      }),
    );
    expect(other).toEqual([]);
    expect(refused).toBeGreaterThan(0);
    await vde.checkpoint();
    expect(await vde.deleteSnapshot('s')).toBe(true);
    await vde.checkpoint();
    await expectAll(vde, kept);
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(path, opts);
    await expectAll(again, kept);
    await checked(again);
    await again.close();
  });
});
