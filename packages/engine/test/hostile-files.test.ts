/*
 * Containers whose checksums are all valid but whose contents no VDE writes (damage that a checksum cannot see, a
 * crafted file, a bug in another writer). Each is ERR_VDE_CORRUPT at the point of use, never a raw error, a huge
 * allocation or silent wrong data, and never made worse by a writable open.
 */
import { BitmapAllocator } from '@vde/allocator';
import { crc32 } from '@vde/block-device';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { WriteAheadLog } from '@vde/wal';
import { describe, expect, it } from 'vitest';
import { LOG_PUT, decodeLogRecord, encodePut } from '../src/log-records.js';
import { LEGACY_META_CHECKSUM, type MetaBlob, decodeMeta, encodeMeta, metaChecksum } from '../src/meta.js';
import { type DataArea, KIND_INDIRECT, decodeIndirect, decodeRecord, encodeIndirect, encodeRecord } from '../src/record.js';
import { type Superblock, decodeSuperblock, encodeSuperblock } from '../src/superblock.js';
import { SMALL, bytes, checked, collect, expectCode, memoryEngine } from './helpers.js';

const BS = 4096;

/** The image of a closed container holding `objects`. */
async function closedImage(objects: Record<string, Uint8Array | string>, named: string[] = []): Promise<Uint8Array> {
  const { device, vde } = await memoryEngine();
  for (const [k, v] of Object.entries(objects)) await vde.store(k, v);
  for (const n of named) await vde.createSnapshot(n);
  await vde.close();
  return device.image();
}

async function newest(dev: BlockDevice): Promise<Superblock> {
  const a = decodeSuperblock(await dev.read(0, 1), 'A');
  const b = decodeSuperblock(await dev.read(1, 1), 'B');
  const sb = !a ? b : !b ? a : a.generation > b.generation ? a : b;
  if (!sb) throw new Error('no valid superblock');
  return sb;
}

async function writeSuperblock(dev: BlockDevice, sb: Superblock): Promise<void> {
  await dev.write(sb.generation % 2 === 1 ? 0 : 1, encodeSuperblock(sb, dev.blockSize));
}

async function readMeta(dev: BlockDevice, sb: Superblock): Promise<MetaBlob> {
  const raw = (await dev.read(sb.metaStart, Math.ceil(sb.metaLength / dev.blockSize))).subarray(0, sb.metaLength);
  return decodeMeta(raw, sb.blockCount, sb.generation);
}

/** Rewrites the newest checkpoint's meta blob in place (valid checksums), with `change` applied. */
async function rewriteMeta(dev: BlockDevice, change: (m: MetaBlob, sb: Superblock) => MetaBlob): Promise<void> {
  const sb = await newest(dev);
  const out = encodeMeta(change(await readMeta(dev, sb), sb));
  expect(out.byteLength).toBeLessThanOrEqual(sb.metaBlocks * dev.blockSize);
  const padded = new Uint8Array(Math.ceil(out.byteLength / dev.blockSize) * dev.blockSize);
  padded.set(out);
  await dev.write(sb.metaStart, padded);
  await writeSuperblock(dev, { ...sb, metaLength: out.byteLength, metaCrc: metaChecksum(out) });
}

/** An allocator image with `free` marked free and every other allocated block of `image` allocated (no reservations). */
function bitmapWithout(image: Uint8Array, free: (b: number) => boolean): Uint8Array {
  const old = BitmapAllocator.load(image);
  const fresh = new BitmapAllocator(old.blockCount);
  for (let b = 0; b < old.blockCount; b++) if (old.isAllocated(b) && !free(b)) fresh.markAllocated([{ start: b, count: 1 }]);
  return fresh.serialize();
}

async function expectOpenCorrupt(image: Uint8Array): Promise<void> {
  for (const readOnly of [true, false]) {
    await expectCode(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, BS), { ...SMALL, readOnly }), 'ERR_VDE_CORRUPT');
  }
}

/** The extents of `key`'s object, read from the log of a crash image (the engine still open when it was taken). */
async function extentsFromLog(image: Uint8Array, key: string): Promise<{ start: number; count: number }[]> {
  const dev = MemoryBlockDevice.fromImage(image, BS);
  const sb = await newest(dev);
  const wal = await WriteAheadLog.open(dev, { startBlock: sb.walStart, blockCount: sb.walBlocks });
  const area: DataArea = { first: sb.walStart + sb.walBlocks, end: dev.blockCount, blockSize: BS };
  for (const rec of await collect(wal.replay())) {
    for (const op of decodeLogRecord(rec.type, rec.payload, rec.lsn)) {
      if (op.type === 'put' && new TextDecoder().decode(op.key) === key) return decodeRecord(op.record, key, area).extents ?? [];
    }
  }
  throw new Error(`no put of ${key} in the log`);
}

describe('checksummed but impossible checkpoints are ERR_VDE_CORRUPT at open', () => {
  it('a bitmap that marks the superblocks and the log free (a writer would put pages over them)', async () => {
    const image = await closedImage({ a: 'alpha', b: bytes(9000) });
    const dev = MemoryBlockDevice.fromImage(image, BS);
    const sb = await newest(dev);
    await rewriteMeta(dev, (m) => ({ ...m, allocatorImage: bitmapWithout(m.allocatorImage, (b) => b < sb.walStart + sb.walBlocks) }));
    await expectOpenCorrupt(dev.image());
  });

  it('a checkpoint LSN past the end of the log (new records would get LSNs the next replay skips)', async () => {
    const dev = MemoryBlockDevice.fromImage(await closedImage({ a: 'alpha' }), BS);
    const sb = await newest(dev);
    await writeSuperblock(dev, { ...sb, checkpointLsn: sb.checkpointLsn + 1000 });
    await expectOpenCorrupt(dev.image());
  });

  it('a named snapshot newer than its checkpoint, or listed twice', async () => {
    const image = await closedImage({ a: 'alpha' }, ['s1']);
    const future = MemoryBlockDevice.fromImage(image, BS);
    await rewriteMeta(future, (m, sb) => ({ ...m, snapshots: m.snapshots.map((s) => ({ ...s, generation: sb.generation + 1000 })) }));
    await expectOpenCorrupt(future.image());
    const twice = MemoryBlockDevice.fromImage(image, BS);
    await rewriteMeta(twice, (m) => ({ ...m, snapshots: [...m.snapshots, ...m.snapshots] }));
    await expectOpenCorrupt(twice.image());
  });

  it('deferred entries on the log, listed twice, or on blocks the bitmap marks free', async () => {
    const image = await closedImage({ a: 'alpha' });
    const sb = await newest(MemoryBlockDevice.fromImage(image, BS));
    const first = sb.walStart + sb.walBlocks;
    const free = BitmapAllocator.load((await readMeta(MemoryBlockDevice.fromImage(image, BS), sb)).allocatorImage);
    let unused = first;
    while (free.isAllocated(unused)) unused++;
    const entries = [
      [{ start: 0, count: 2, generation: 1 }],
      [{ start: sb.indexRoot, count: 1, generation: 1 }, { start: sb.indexRoot, count: 1, generation: 1 }],
      [{ start: unused, count: 1, generation: 1 }],
    ];
    for (const deferred of entries) {
      const dev = MemoryBlockDevice.fromImage(image, BS);
      await rewriteMeta(dev, (m) => ({ ...m, deferred }));
      await expectCode(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(dev.image(), BS), SMALL), 'ERR_VDE_CORRUPT');
    }
  });

  it('an inflated meta block count does not make open read the whole run', async () => {
    const image = await closedImage({ a: 'alpha' });
    const sb = await newest(MemoryBlockDevice.fromImage(image, BS));
    const dev = new (class extends MemoryBlockDevice {
      metaReads: number[] = [];
      override async read(blockNo: number, count: number): Promise<Uint8Array> {
        if (blockNo === sb.metaStart) this.metaReads.push(count);
        return super.read(blockNo, count);
      }
    })({ blockSize: BS });
    await dev.grow(image.byteLength / BS);
    await dev.write(0, image);
    await writeSuperblock(dev, { ...sb, metaBlocks: sb.blockCount - sb.metaStart });
    const vde = await VirtualDiskEngine.open(dev, { ...SMALL, readOnly: true });
    expect(new TextDecoder().decode(await vde.retrieve('a'))).toBe('alpha');
    await vde.close();
    expect(dev.metaReads.length).toBeGreaterThan(0);
    expect(Math.max(...dev.metaReads)).toBe(Math.ceil(sb.metaLength / BS));
  });

  it("a superblock that names another intact meta blob of the same length (a reused run) is refused", async () => {
    // Both superblocks' blobs are intact and the same length (checkpoints with nothing changed between them). Offset
    // 80 was the CRC of the whole blob, trailer included: the same constant for every intact blob, so a superblock
    // pointed at the other blob opened it as its own (the reader protocol relies on this check to see a reused run).
    const { device, vde } = await memoryEngine();
    await vde.store('a', 'alpha');
    for (let i = 0; i < 3; i++) await vde.checkpoint();
    await vde.close();
    const dev = MemoryBlockDevice.fromImage(device.image(), BS);
    const a = decodeSuperblock(await dev.read(0, 1), 'A')!;
    const b = decodeSuperblock(await dev.read(1, 1), 'B')!;
    const [sb, other] = a.generation > b.generation ? [a, b] : [b, a];
    expect(sb.metaLength).toBe(other.metaLength);
    expect(sb.metaStart).not.toBe(other.metaStart);
    expect(sb.indexRoot).toBe(other.indexRoot);
    await writeSuperblock(dev, { ...sb, metaStart: other.metaStart, metaBlocks: other.metaBlocks });
    const err: unknown = await VirtualDiskEngine.open(dev, { ...SMALL, readOnly: true }).then(
      async (v) => {
        await v.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ERR_VDE_CORRUPT' });
    expect((err as Error).message).toContain('meta blob');
  });

  it('a superblock written by an earlier release (meta CRC over the whole blob) opens, and the next checkpoint names its blob', async () => {
    const dev = MemoryBlockDevice.fromImage(await closedImage({ a: 'alpha' }), BS);
    const sb = await newest(dev);
    const blob = (await dev.read(sb.metaStart, Math.ceil(sb.metaLength / BS))).subarray(0, sb.metaLength);
    expect(sb.metaCrc).toBe(metaChecksum(blob));
    expect(crc32(blob)).toBe(LEGACY_META_CHECKSUM); // what the earlier release wrote for every intact blob
    await writeSuperblock(dev, { ...sb, metaCrc: LEGACY_META_CHECKSUM });
    const vde = await VirtualDiskEngine.open(dev, SMALL);
    expect(new TextDecoder().decode(await vde.retrieve('a'))).toBe('alpha');
    await vde.store('b', 'beta');
    await vde.checkpoint();
    const next = await newest(dev);
    expect(next.metaCrc).not.toBe(LEGACY_META_CHECKSUM);
    await checked(vde);
    await vde.close();
  });

  it('a generation that cannot grow: the checkpoint is refused and the container still opens', async () => {
    const dev = MemoryBlockDevice.fromImage(await closedImage({ a: 'alpha' }), BS);
    const sb = await newest(dev);
    await writeSuperblock(dev, { ...sb, generation: Number.MAX_SAFE_INTEGER }); // odd: slot A, newer than B
    const vde = await VirtualDiskEngine.open(dev, SMALL);
    await vde.store('b', 'beta');
    await expectCode(vde.checkpoint(), 'ERR_VDE_CORRUPT');
    await vde.close().catch(() => undefined);
    const again = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(dev.image(), BS), { ...SMALL, readOnly: true });
    expect(new TextDecoder().decode(await again.retrieve('a'))).toBe('alpha');
    expect(new TextDecoder().decode(await again.retrieve('b'))).toBe('beta');
    await again.close();
  });
});

describe('log records VDE never writes are ERR_VDE_CORRUPT, not index entries', () => {
  async function withLoggedPut(key: Uint8Array): Promise<Uint8Array> {
    const dev = MemoryBlockDevice.fromImage(await closedImage({ a: 'alpha' }), BS);
    const sb = await newest(dev);
    const wal = await WriteAheadLog.open(dev, { startBlock: sb.walStart, blockCount: sb.walBlocks });
    const record = encodeRecord({ size: 1, createdMs: 1, modifiedMs: 1, crc: 0, nonce: 0, metadata: new Uint8Array(0), inline: new Uint8Array(1) });
    await wal.append(LOG_PUT, encodePut(key, record));
    await wal.close();
    return dev.image();
  }

  it('an empty key (no API call could read or delete it)', async () => {
    await expectOpenCorrupt(await withLoggedPut(new Uint8Array(0)));
  });

  it('a key that is not UTF-8, or longer than any key the container takes', async () => {
    await expectOpenCorrupt(await withLoggedPut(new Uint8Array([0x6b, 0xff, 0xfe])));
    await expectOpenCorrupt(await withLoggedPut(new Uint8Array(3000).fill(0x6b)));
  });
});

describe('object records are checked against the data area', () => {
  const area: DataArea = { first: 18, end: 1000, blockSize: BS };
  const base = { createdMs: 1, modifiedMs: 1, crc: 0, nonce: 0, metadata: new Uint8Array(0) };

  it('extents that overlap (an object claiming gigabytes of a small file) are refused', () => {
    const record = encodeRecord({ ...base, size: 40 * BS, extents: Array.from({ length: 40 }, () => ({ start: 100, count: 1 })) });
    expect(() => decodeRecord(record, 'object x', area)).toThrow(/overlap/);
    const fine = encodeRecord({ ...base, size: 2 * BS, extents: [{ start: 101, count: 1 }, { start: 100, count: 1 }] });
    expect(decodeRecord(fine, 'object x', area).extents).toEqual([{ start: 101, count: 1 }, { start: 100, count: 1 }]);
  });

  it('an extent in the superblocks or the log is refused', () => {
    const record = encodeRecord({ ...base, size: BS, extents: [{ start: 0, count: 1 }] });
    expect(() => decodeRecord(record, 'object x', area)).toThrow(/outside the data area/);
  });

  it('an indirect pointer whose run is longer than its record is refused', () => {
    const ok = encodeIndirect({ start: 100, blocks: 1, length: 200, crc: 0 });
    expect(ok[0]).toBe(KIND_INDIRECT);
    expect(decodeIndirect(ok, 'object x', area).blocks).toBe(1);
    expect(() => decodeIndirect(encodeIndirect({ start: 100, blocks: 800, length: 200, crc: 0 }), 'object x', area)).toThrow(/out of range/);
  });
});

describe('scrub finds what reads fine today but the next store would overwrite', () => {
  it('an object on blocks the bitmap marks free', async () => {
    const { device, vde } = await memoryEngine();
    await vde.store('a', bytes(20_000, 3));
    await vde.store('b', bytes(20_000, 4));
    const extents = await extentsFromLog(device.image(), 'a'); // a crash image: the log still holds the puts
    await vde.close();
    const dev = MemoryBlockDevice.fromImage(device.image(), BS);
    const owned = (b: number): boolean => extents.some((e) => b >= e.start && b < e.start + e.count);
    await rewriteMeta(dev, (m) => ({ ...m, allocatorImage: bitmapWithout(m.allocatorImage, owned) }));
    const reopened = await VirtualDiskEngine.open(dev, SMALL);
    const report = await reopened.scrub();
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.key, p.code])).toEqual([['a', 'ERR_VDE_CORRUPT']]);
    expect(report.problems[0]!.message).toMatch(/marked free/);
    await reopened.close();
  });

  it('a healthy container scrubs clean, writable and read-only', async () => {
    const image = await closedImage({ a: bytes(20_000, 1), b: bytes(9_000, 2), c: 'small' });
    for (const readOnly of [false, true]) {
      const vde = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, BS), { ...SMALL, readOnly });
      expect((await vde.scrub()).problems).toEqual([]);
      await checked(vde);
      await vde.close();
    }
  });
});
