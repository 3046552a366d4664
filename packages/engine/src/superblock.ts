import { CorruptionError, FormatError, crc32 } from '@vde/block-device';
import { getU64, putU64, viewOf } from './bytes.js';

/**
 * Superblock: the root of a checkpoint. Layout in FORMAT.md ("Superblock"): 128 bytes at the start of block 0 (A,
 * odd generations) or block 1 (B, even generations), CRC-32 over bytes 0..123 at offset 124.
 * Invariant: written only after everything it points to is durable; recovery uses the valid copy with the highest
 * generation.
 */
export interface Superblock {
  /**
   * Format version: 1, or 2 when the meta blob is a version 2 blob (FORMAT.md, "Meta blob, version 2"): a release
   * that reads only version 1 then refuses the container (ERR_VDE_FORMAT) instead of misreading the blob.
   */
  version: 1 | 2;
  blockSize: number;
  generation: number;
  checkpointLsn: number;
  blockCount: number;
  walStart: number;
  walBlocks: number;
  indexRoot: number;
  /** The meta blob's (first) run, its whole byte length and CRC-32 (version 2: of every run, see FORMAT.md). */
  metaStart: number;
  metaBlocks: number;
  metaLength: number;
  metaCrc: number;
  objectCount: number;
  createdMs: number;
  checkpointMs: number;
}

/** The newest format version this release reads and writes (it writes 1 whenever the meta blob allows). */
export const FORMAT_VERSION = 2;
/** The creation marker's format version (unchanged by version 2, which only a checkpoint's superblock can say). */
const MARKER_VERSION = 1;
/** The smallest log region the write-ahead log accepts (2 header blocks, 2 record blocks); VDE formats 16 or more. */
const MIN_WAL_BLOCKS = 4;
/** The smallest meta blob (magic, version, three counts, CRC). */
const MIN_META_BYTES = 20;
export const SUPERBLOCK_BYTES = 128;
const MAGIC = [0x56, 0x44, 0x45, 0x43, 0x4e, 0x54, 0x52, 0x00];

export function encodeSuperblock(sb: Superblock, blockSize: number): Uint8Array {
  const block = new Uint8Array(blockSize);
  const v = viewOf(block);
  block.set(MAGIC, 0);
  v.setUint32(8, sb.version, true);
  v.setUint32(12, sb.blockSize, true);
  putU64(v, 16, sb.generation);
  putU64(v, 24, sb.checkpointLsn);
  putU64(v, 32, sb.blockCount);
  putU64(v, 40, sb.walStart);
  putU64(v, 48, sb.walBlocks);
  putU64(v, 56, sb.indexRoot);
  putU64(v, 64, sb.metaStart);
  v.setUint32(72, sb.metaBlocks, true);
  v.setUint32(76, sb.metaLength, true);
  v.setUint32(80, sb.metaCrc, true);
  putU64(v, 88, sb.objectCount);
  putU64(v, 96, sb.createdMs);
  putU64(v, 104, sb.checkpointMs);
  v.setUint32(124, crc32(block.subarray(0, 124)), true);
  return block;
}

/** Block 0 while a container is being created (FORMAT.md, "Creation marker"): `VDEMAKE\0`. */
const CREATING_MAGIC = [0x56, 0x44, 0x45, 0x4d, 0x41, 0x4b, 0x45, 0x00];

/**
 * The creation marker: written to block 0 (and synced) before anything else of a new container; the first
 * checkpoint's superblock A replaces it. Magic, format version, block size, CRC-32 over bytes 0..123 at 124.
 */
export function encodeCreationMarker(blockSize: number): Uint8Array {
  const block = new Uint8Array(blockSize);
  const v = viewOf(block);
  block.set(CREATING_MAGIC, 0);
  v.setUint32(8, MARKER_VERSION, true);
  v.setUint32(12, blockSize, true);
  v.setUint32(124, crc32(block.subarray(0, 124)), true);
  return block;
}

/** The block size a valid creation marker records, or undefined if `bytes` is not one. */
export function creationMarkerBlockSize(bytes: Uint8Array): number | undefined {
  if (bytes.byteLength < SUPERBLOCK_BYTES || !CREATING_MAGIC.every((b, i) => bytes[i] === b)) return undefined;
  const v = viewOf(bytes);
  if (v.getUint32(124, true) !== crc32(bytes.subarray(0, 124)) || v.getUint32(8, true) !== MARKER_VERSION) return undefined;
  return v.getUint32(12, true);
}

export function hasMagic(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 8 && MAGIC.every((b, i) => bytes[i] === b);
}

/** Peeks at the block size recorded in a superblock (for opening a file before the device exists). */
export function peekBlockSize(bytes: Uint8Array): number | undefined {
  if (!hasMagic(bytes) || bytes.byteLength < SUPERBLOCK_BYTES) return undefined;
  const v = viewOf(bytes);
  if (v.getUint32(124, true) !== crc32(bytes.subarray(0, 124))) return undefined;
  return v.getUint32(12, true);
}

/**
 * Decodes one superblock copy. Returns undefined if the copy is not valid (no magic or bad checksum: a torn or never
 * written copy). Throws FormatError for a newer format version, CorruptionError for a checksummed copy whose fields
 * contradict each other.
 */
export function decodeSuperblock(bytes: Uint8Array, slot: 'A' | 'B'): Superblock | undefined {
  if (!hasMagic(bytes) || bytes.byteLength < SUPERBLOCK_BYTES) return undefined;
  const v = viewOf(bytes);
  if (v.getUint32(124, true) !== crc32(bytes.subarray(0, 124))) return undefined;
  const version = v.getUint32(8, true);
  if (version > FORMAT_VERSION) {
    throw new FormatError(`the container was written by a newer VDE (format version ${version}; this one reads ${FORMAT_VERSION})`);
  }
  if (version < 1) throw new FormatError(`unknown container format version ${version}`);
  const what = `superblock ${slot}`;
  const sb: Superblock = {
    version: version === 2 ? 2 : 1,
    blockSize: v.getUint32(12, true),
    generation: getU64(v, 16, what),
    checkpointLsn: getU64(v, 24, what),
    blockCount: getU64(v, 32, what),
    walStart: getU64(v, 40, what),
    walBlocks: getU64(v, 48, what),
    indexRoot: getU64(v, 56, what),
    metaStart: getU64(v, 64, what),
    metaBlocks: v.getUint32(72, true),
    metaLength: v.getUint32(76, true),
    metaCrc: v.getUint32(80, true),
    objectCount: getU64(v, 88, what),
    createdMs: getU64(v, 96, what),
    checkpointMs: getU64(v, 104, what),
  };
  const geometryOk =
    sb.generation >= 1 &&
    sb.walStart === 2 &&
    sb.walBlocks >= MIN_WAL_BLOCKS &&
    sb.blockCount >= sb.walStart + sb.walBlocks &&
    sb.indexRoot >= sb.walStart + sb.walBlocks &&
    sb.indexRoot < sb.blockCount &&
    sb.metaStart >= sb.walStart + sb.walBlocks &&
    sb.metaBlocks >= 1 &&
    sb.metaStart + sb.metaBlocks <= sb.blockCount &&
    sb.metaLength >= MIN_META_BYTES &&
    // Version 2: the length covers every run of the blob (each checked when read), at most the data area.
    sb.metaLength <= (sb.version === 1 ? sb.metaBlocks : sb.blockCount - sb.walStart - sb.walBlocks) * sb.blockSize &&
    (slot === 'A') === (sb.generation % 2 === 1);
  if (!geometryOk) throw new CorruptionError(what, 'fields are inconsistent (geometry out of range)');
  return sb;
}
