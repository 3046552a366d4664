import { describe, expect, it } from 'vitest';
import { ClosedError, MemoryBlockDevice, type BlockDevice } from '@vde/block-device';
import { FaultyBlockDevice, SECTOR_SIZE, SeededRandom } from '@vde/test-harness';

const BS = 4096;

function filled(blocks: number, byte: number): Uint8Array {
  return new Uint8Array(blocks * BS).fill(byte);
}

function fresh(blocks = 8): FaultyBlockDevice {
  return new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: BS, blockCount: blocks }));
}

/** Classifies each 512-byte sector of `bytes` as old (0x00), new (`byte`), or neither. */
function sectorsOf(bytes: Uint8Array, byte: number): ('old' | 'new' | 'mixed')[] {
  const out: ('old' | 'new' | 'mixed')[] = [];
  for (let off = 0; off < bytes.byteLength; off += SECTOR_SIZE) {
    const s = bytes.subarray(off, off + SECTOR_SIZE);
    out.push(s.every((b) => b === 0) ? 'old' : s.every((b) => b === byte) ? 'new' : 'mixed');
  }
  return out;
}

describe('SeededRandom', () => {
  it('repeats its sequence for a seed and differs across seeds', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const sa = Array.from({ length: 20 }, () => a.next());
    expect(Array.from({ length: 20 }, () => b.next())).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.next())).not.toEqual(sa);
    for (const x of sa) expect(x >= 0 && x < 1).toBe(true);
  });

  it('int(n) covers [0, n) and nothing else', () => {
    const r = new SeededRandom(7);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(r.int(5));
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(() => r.int(0)).toThrow(RangeError);
  });
});

describe('FaultyBlockDevice passes I/O through', () => {
  it('reads what was written and counts calls and bytes', async () => {
    const dev = fresh();
    await dev.write(1, filled(2, 7));
    expect(await dev.read(1, 2)).toEqual(filled(2, 7));
    const buf = new Uint8Array(BS);
    await dev.readInto(2, buf);
    expect(buf).toEqual(filled(1, 7));
    await dev.sync();
    expect(dev.counters).toEqual({ reads: 2, writes: 1, syncs: 1, bytesWritten: 2 * BS });
    expect(dev.blockSize).toBe(BS);
    expect(dev.blockCount).toBe(8);
    expect(dev.readOnly).toBe(false);
  });

  it('counts unsynced writes until a sync covers them', async () => {
    const dev = fresh();
    await dev.write(0, filled(1, 1));
    await dev.write(1, filled(1, 2));
    expect(dev.unsyncedWrites).toBe(2);
    await dev.sync();
    expect(dev.unsyncedWrites).toBe(0);
  });
});

describe('powerCut', () => {
  it('keeps synced data in every mode', async () => {
    for (const mode of ['random', 'drop-all', 'keep-all'] as const) {
      for (let seed = 0; seed < 20; seed++) {
        const dev = fresh();
        await dev.write(0, filled(2, 0xaa));
        await dev.sync();
        await dev.write(0, filled(1, 0xbb)); // overwrites a synced block, unsynced
        await dev.write(4, filled(1, 0xcc));
        const after = dev.powerCut({ seed, mode });
        // Block 1 was synced and never overwritten: always exactly the synced bytes.
        expect(await after.read(1, 1)).toEqual(filled(1, 0xaa));
        // Block 0: each sector either the synced 0xaa or the new 0xbb.
        const b0 = await after.read(0, 1);
        for (let off = 0; off < BS; off += SECTOR_SIZE) {
          const s = b0.subarray(off, off + SECTOR_SIZE);
          expect(s.every((b) => b === 0xaa) || s.every((b) => b === 0xbb)).toBe(true);
        }
      }
    }
  });

  it('drop-all loses every unsynced write, keep-all keeps them', async () => {
    const make = async (): Promise<FaultyBlockDevice> => {
      const dev = fresh();
      await dev.write(0, filled(1, 1));
      await dev.sync();
      await dev.write(1, filled(1, 2));
      await dev.write(0, filled(1, 3));
      return dev;
    };
    const dropped = (await make()).powerCut({ seed: 1, mode: 'drop-all' });
    expect(await dropped.read(0, 2)).toEqual(new Uint8Array([...filled(1, 1), ...filled(1, 0)]));
    const kept = (await make()).powerCut({ seed: 1, mode: 'keep-all' });
    expect(await kept.read(0, 2)).toEqual(new Uint8Array([...filled(1, 3), ...filled(1, 2)]));
  });

  it('a sync covers only the writes that had resolved when it was called', async () => {
    const dev = fresh();
    const inFlight = dev.write(2, filled(1, 9)); // not yet resolved when sync() is called
    const synced = dev.sync();
    await Promise.all([inFlight, synced]);
    expect(dev.unsyncedWrites).toBe(1);
    const after = dev.powerCut({ seed: 0, mode: 'drop-all' });
    expect(await after.read(2, 1)).toEqual(filled(1, 0));
  });

  it('random mode is reproducible for a seed', async () => {
    const run = async (seed: number): Promise<Uint8Array> => {
      const dev = fresh(16);
      for (let i = 0; i < 16; i++) await dev.write(i, filled(1, i + 1));
      return dev.powerCut({ seed }).image();
    };
    for (const seed of [1, 2, 99]) expect(await run(seed)).toEqual(await run(seed));
    expect(await run(1)).not.toEqual(await run(2));
  });

  it('random mode keeps, drops and tears writes across seeds, torn only at sector granularity', async () => {
    const outcomes = { kept: 0, dropped: 0, torn: 0 };
    for (let seed = 0; seed < 200; seed++) {
      const dev = fresh(2);
      await dev.write(0, filled(2, 0x5a));
      const after = dev.powerCut({ seed });
      const sectors = sectorsOf(after.image(), 0x5a);
      expect(sectors).not.toContain('mixed');
      if (sectors.every((s) => s === 'new')) outcomes.kept++;
      else if (sectors.every((s) => s === 'old')) outcomes.dropped++;
      else outcomes.torn++;
    }
    expect(outcomes.kept).toBeGreaterThan(20);
    expect(outcomes.dropped).toBeGreaterThan(20);
    expect(outcomes.torn).toBeGreaterThan(20);
  });

  it('unsynced growth may be kept or lost; synced growth is kept', async () => {
    const sizes = new Set<number>();
    for (let seed = 0; seed < 50; seed++) {
      const dev = fresh(4);
      await dev.grow(6);
      await dev.sync();
      await dev.grow(10);
      await dev.write(8, filled(1, 4));
      const after = dev.powerCut({ seed });
      sizes.add(after.blockCount);
      if (after.blockCount === 10) expect(sectorsOf(await after.read(8, 1), 4)).not.toContain('mixed');
    }
    expect([...sizes].sort((a, b) => a - b)).toEqual([6, 10]);
    const dev = fresh(4);
    await dev.grow(9);
    expect(dev.powerCut({ seed: 0, mode: 'drop-all' }).blockCount).toBe(4);
  });

  it('makes the device dead: every call throws ClosedError', async () => {
    const dev = fresh();
    dev.powerCut({ seed: 0 });
    await expect(dev.read(0, 1)).rejects.toBeInstanceOf(ClosedError);
    await expect(dev.write(0, filled(1, 1))).rejects.toBeInstanceOf(ClosedError);
    await expect(dev.sync()).rejects.toBeInstanceOf(ClosedError);
    await expect(dev.grow(20)).rejects.toBeInstanceOf(ClosedError);
    await expect(dev.close()).rejects.toBeInstanceOf(ClosedError);
    expect(() => dev.powerCut({ seed: 0 })).toThrow(ClosedError);
  });

  it('calls in flight at the power cut reject with ClosedError', async () => {
    const dev = fresh();
    await dev.write(0, filled(1, 1));
    const write = dev.write(1, filled(1, 2));
    const sync = dev.sync();
    const after = dev.powerCut({ seed: 0, mode: 'drop-all' });
    await expect(write).rejects.toBeInstanceOf(ClosedError);
    await expect(sync).rejects.toBeInstanceOf(ClosedError);
    expect(await after.read(0, 2)).toEqual(new Uint8Array(2 * BS));
  });

  it('refuses a power cut over a device whose contents it cannot copy', () => {
    const inner = new MemoryBlockDevice({ blockSize: BS, blockCount: 1 });
    const opaque: BlockDevice = {
      blockSize: BS,
      get blockCount() {
        return inner.blockCount;
      },
      readOnly: false,
      read: (b, c) => inner.read(b, c),
      readInto: (b, buf) => inner.readInto(b, buf),
      write: (b, d) => inner.write(b, d),
      sync: () => inner.sync(),
      grow: (n) => inner.grow(n),
      close: () => inner.close(),
    };
    expect(() => new FaultyBlockDevice(opaque).powerCut({ seed: 1 })).toThrow(/image/);
  });
});

describe('failAfter', () => {
  it('fails the n-th next matching I/O with a Node-shaped error, once', async () => {
    const dev = fresh();
    dev.failAfter(3, 'EIO');
    await dev.write(0, filled(1, 1));
    await dev.read(0, 1);
    const err = (await dev.sync().catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toHaveProperty('code', 'ERR_VDE_IO');
    expect(err.code).toBe('EIO');
    expect(err.errno).toBe(-5);
    expect(err.syscall).toBe('fsync');
    await dev.sync(); // not sticky: the next one succeeds
    expect(dev.counters.syncs).toBe(1);
  });

  it('filters by op and counts only matching I/O', async () => {
    const dev = fresh();
    dev.failAfter(2, 'ENOSPC', { op: 'write' });
    await dev.read(0, 1);
    await dev.sync();
    await dev.write(0, filled(1, 1));
    await dev.read(0, 1);
    const err = (await dev.write(1, filled(1, 1)).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err.code).toBe('ENOSPC');
    expect(err.errno).toBe(-28);
    expect(err.syscall).toBe('write');
    await dev.write(1, filled(1, 1));
  });

  it('sticky keeps failing matching I/O until clearFaults', async () => {
    const dev = fresh();
    dev.failAfter(1, 'EIO', { op: 'sync', sticky: true });
    await dev.write(0, filled(1, 1));
    for (let i = 0; i < 3; i++) await expect(dev.sync()).rejects.toMatchObject({ code: 'EIO' });
    await dev.read(0, 1); // other ops unaffected
    dev.clearFaults();
    await dev.sync();
    expect(dev.counters).toMatchObject({ syncs: 1, writes: 1, reads: 1 });
  });

  it('a failed write may leave part of its sectors, still unsynced', async () => {
    const dev = fresh();
    dev.failAfter(1, 'EIO', { op: 'write' });
    await expect(dev.write(0, filled(1, 0x77))).rejects.toMatchObject({ code: 'EIO' });
    const sectors = sectorsOf(await dev.read(0, 1), 0x77);
    expect(sectors).not.toContain('mixed');
    expect(sectors).toContain('new');
    expect(sectors).toContain('old');
    expect(dev.counters.writes).toBe(0);
    expect(dev.unsyncedWrites).toBe(1);
    const after = dev.powerCut({ seed: 0, mode: 'drop-all' });
    expect(await after.read(0, 1)).toEqual(filled(1, 0));
  });

  it('rejects a bad n', () => {
    expect(() => fresh().failAfter(0, 'EIO')).toThrow(/n >= 1/);
  });
});
