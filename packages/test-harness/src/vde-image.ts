import { InvalidArgumentError, MemoryBlockDevice, VirtualDiskEngine, type EngineOptions } from '@vde/engine';
import { checkCount, checkOptionsObject, checkSeed } from './options.js';
import type { ImageRegion } from './corruption-sweep.js';
import type { StoredObject } from './store-adapter.js';
import { metadataFor, valueFor } from './values.js';

const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
const u64 = (b: Uint8Array, at: number): number => u32(b, at) + u32(b, at + 4) * 2 ** 32;
const MAGIC = [0x56, 0x44, 0x45, 0x43, 0x4e, 0x54, 0x52, 0x00];

/**
 * The regions of a VDE container image, found from its superblocks (FORMAT.md): superblock A and B (the first 128
 * bytes of blocks 0 and 1), the log (blocks 2 … 2+W−1), the meta blobs both superblocks name, index pages (blocks
 * after the log whose bytes 4–5 are `BT`, the B+tree page magic) and data (every other non-zero block after the
 * log). A format version 2 superblock's meta blob spans several runs (FORMAT.md, "Meta blob, version 2"): its first
 * run lists the others, and the list continues run after run; the meta blob region is then every run's share of the
 * blob's length, in the order the blob is read. A list that leaves the image (a damaged one) is followed only as far as
 * it stays inside it. Throws RangeError if neither superblock has the magic.
 */
export function vdeRegions(image: Uint8Array): ImageRegion[] {
  if (!((image as unknown) instanceof Uint8Array)) throw new InvalidArgumentError('vdeRegions(image): image must be a Uint8Array');
  const hasMagic = (at: number): boolean => MAGIC.every((m, i) => image[at + i] === m);
  const bsA = hasMagic(0) ? u32(image, 12) : 0;
  const bs = bsA || (image.byteLength > 4096 + 128 ? [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536].find((b) => hasMagic(b)) : undefined) || 0;
  if (!bs) throw new RangeError('no VDE superblock in this image');
  const supers = [0, bs].filter(hasMagic).map((at) => ({
    version: u32(image, at + 8),
    generation: u64(image, at + 16),
    walStart: u64(image, at + 40),
    walBlocks: u64(image, at + 48),
    metaStart: u64(image, at + 64),
    metaBlocks: u32(image, at + 72),
    metaLength: u32(image, at + 76),
  }));
  const sb = supers.sort((a, b) => b.generation - a.generation)[0]!;
  const blocks = Math.floor(image.byteLength / bs);
  const logEnd = Math.min(blocks, sb.walStart + sb.walBlocks);
  const meta: [number, number][] = [];
  const metaBlocks = new Set<number>();
  for (const s of supers) {
    for (const run of metaRuns(image, bs, blocks, s)) {
      for (let b = run.start; b < run.start + run.count; b++) metaBlocks.add(b);
      meta.push([run.start * bs, run.start * bs + run.bytes]);
    }
  }
  const index: [number, number][] = [];
  const data: [number, number][] = [];
  for (let b = logEnd; b < blocks; b++) {
    if (metaBlocks.has(b)) continue;
    const at = b * bs;
    if (image[at + 4] === 0x42 && image[at + 5] === 0x54) index.push([at, at + bs]);
    else if (image.subarray(at, at + bs).some((x) => x !== 0)) data.push([at, at + bs]);
  }
  return [
    { name: 'superblock A', ranges: [[0, 128]] },
    { name: 'superblock B', ranges: [[bs, bs + 128]] },
    { name: 'log', ranges: [[sb.walStart * bs, logEnd * bs]] },
    { name: 'meta blob', ranges: meta },
    { name: 'index pages', ranges: index },
    { name: 'data', ranges: data },
  ];
}

/**
 * The runs of the meta blob a superblock names, each with the bytes of the blob it holds (FORMAT.md, "Meta blob,
 * version 1" and "version 2"). Version 1: one run. Version 2: the first run, then the continuation extents its
 * header lists (E at byte 8, then 12 bytes each: start u64, count u32), read in order as the engine reads them (entry
 * i lies in the runs before extent i). Only runs inside the image and the blob's length are returned.
 */
function metaRuns(
  image: Uint8Array,
  bs: number,
  blocks: number,
  s: { version: number; metaStart: number; metaBlocks: number; metaLength: number },
): { start: number; count: number; bytes: number }[] {
  const inImage = (start: number, count: number): boolean => count >= 1 && start + count <= blocks;
  if (s.version !== 2 || s.metaLength < 12 || !inImage(s.metaStart, s.metaBlocks)) {
    return [{ start: s.metaStart, count: s.metaBlocks, bytes: s.metaLength }];
  }
  const runs: { start: number; count: number; bytes: number }[] = [];
  // The logical blob's bytes so far, as block offsets into the image: where byte i of the blob lies.
  const offsets: number[] = [];
  let left = s.metaLength;
  const take = (start: number, count: number): void => {
    const bytes = Math.min(left, count * bs);
    runs.push({ start, count, bytes });
    for (let b = 0; b < Math.ceil(bytes / bs); b++) offsets.push((start + b) * bs);
    left -= bytes;
  };
  const at = (i: number): number | undefined => {
    const block = offsets[Math.floor(i / bs)];
    return block === undefined ? undefined : block + (i % bs);
  };
  const u32At = (i: number): number | undefined => {
    const parts = [0, 1, 2, 3].map((k) => at(i + k));
    if (parts.some((p) => p === undefined || p >= image.byteLength)) return undefined;
    return (image[parts[0]!]! | (image[parts[1]!]! << 8) | (image[parts[2]!]! << 16) | (image[parts[3]!]! << 24)) >>> 0;
  };
  take(s.metaStart, s.metaBlocks);
  const e = u32At(8) ?? 0;
  for (let i = 0; i < e && left > 0; i++) {
    const entry = 12 + 12 * i;
    const lo = u32At(entry);
    const hi = u32At(entry + 4);
    const count = u32At(entry + 8);
    if (lo === undefined || hi === undefined || count === undefined) break;
    const start = lo + hi * 2 ** 32;
    if (!inImage(start, count)) break;
    take(start, count);
  }
  return runs;
}

/**
 * Builds a VDE container image in memory for the corruption sweep: `objects` objects (sizes from `valueFor`, up to
 * `maxValueBytes`) with metadata, some overwritten and deleted, then a checkpoint and a clean close (so both
 * superblocks describe the same objects). Returns the image and what it holds.
 */
export async function buildVdeImage(options: {
  seed: number;
  objects: number;
  blockSize?: number;
  maxValueBytes?: number;
  engine?: EngineOptions;
}): Promise<{ image: Uint8Array; blockSize: number; expected: Map<string, StoredObject> }> {
  const o = checkOptionsObject('buildVdeImage', options);
  checkSeed('buildVdeImage', o, 'seed', false);
  checkCount('buildVdeImage', o, 'objects', 0, false);
  checkCount('buildVdeImage', o, 'blockSize', 512);
  checkCount('buildVdeImage', o, 'maxValueBytes', 0);
  const blockSize = options.blockSize ?? 4096;
  const max = options.maxValueBytes ?? 32 * 1024;
  const device = new MemoryBlockDevice({ blockSize });
  const vde = await VirtualDiskEngine.open(device, { walSizeBytes: 256 * 1024, cacheSizeBytes: 256 * 1024, ...options.engine, blockSize });
  const expected = new Map<string, StoredObject>();
  for (let i = 0; i < options.objects; i++) {
    const key = `obj/${String(i).padStart(5, '0')}`;
    for (let version = 1; version <= 1 + (i % 3 === 0 ? 1 : 0); version++) {
      const value = valueFor(options.seed, key, version, max);
      const metadata = metadataFor(key, version);
      await vde.store(key, value, { metadata });
      expected.set(key, { value, metadata });
    }
    if (i % 7 === 6) {
      await vde.delete(key);
      expected.delete(key);
    }
  }
  await vde.checkpoint();
  await vde.close();
  return { image: device.image(), blockSize, expected };
}
