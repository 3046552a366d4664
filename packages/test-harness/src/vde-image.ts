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
 * log). Throws RangeError if neither superblock has the magic.
 */
export function vdeRegions(image: Uint8Array): ImageRegion[] {
  if (!((image as unknown) instanceof Uint8Array)) throw new InvalidArgumentError('vdeRegions(image): image must be a Uint8Array');
  const hasMagic = (at: number): boolean => MAGIC.every((m, i) => image[at + i] === m);
  const bsA = hasMagic(0) ? u32(image, 12) : 0;
  const bs = bsA || (image.byteLength > 4096 + 128 ? [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536].find((b) => hasMagic(b)) : undefined) || 0;
  if (!bs) throw new RangeError('no VDE superblock in this image');
  const supers = [0, bs].filter(hasMagic).map((at) => ({
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
  const meta: [number, number][] = supers.map((s) => [s.metaStart * bs, s.metaStart * bs + s.metaLength]);
  const metaBlocks = new Set<number>();
  for (const s of supers) for (let b = s.metaStart; b < s.metaStart + s.metaBlocks; b++) metaBlocks.add(b);
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
