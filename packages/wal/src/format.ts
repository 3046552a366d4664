import { crc32 } from '@vde/block-device';

/*
 * The on-disk types of the log. The README's "On-disk format" section is the specification; keep them in step.
 */

export const WAL_MAGIC = 0x4c415756; // bytes 'V' 'W' 'A' 'L' read as a little-endian u32
export const WAL_VERSION = 1;
/** Region blocks before the record area: header slots A and B. */
export const HEADER_BLOCKS = 2;
export const HEADER_SIZE = 48;
export const RECORD_HEADER_SIZE = 36;
/** Record flag: the last record of its batch; the next record starts at the next block boundary. */
export const FLAG_END_OF_BATCH = 1;
/** Largest u32, the cap of a payload length field. */
export const MAX_U32 = 0xffff_ffff;

/**
 * Header slot, one block (bytes after 48 are zero and ignored):
 *   0 magic u32 | 4 version u32 | 8 generation u32 | 12 epoch u32 | 16 headLsn u64 | 24 headPos u64
 *   32 headPrevCrc u32 | 36 blockSize u32 | 40 areaBlocks u32 | 44 crc u32 (of bytes 0..43)
 * Invariant: the valid slot with the highest generation describes the head; the record area from headPos up to
 * the next block boundary after the tail holds no byte that a later batch overwrote before this header was synced.
 */
export interface WalHeader {
  generation: number;
  epoch: number;
  headLsn: number;
  headPos: number;
  headPrevCrc: number;
  blockSize: number;
  areaBlocks: number;
}

/**
 * Record header, 36 bytes, then `length` payload bytes:
 *   0 crc u32 (of bytes 4..35 + payload) | 4 prevCrc u32 | 8 lsn u64 | 16 durableLsn u64 | 24 epoch u32
 *   28 length u32 | 32 type u8 | 33 flags u8 | 34 reserved u16 (0)
 * Invariant: in a valid log each record's lsn is the previous one's + 1 and its prevCrc is the previous one's crc.
 */
export interface RecordHeader {
  crc: number;
  prevCrc: number;
  lsn: number;
  durableLsn: number;
  epoch: number;
  length: number;
  type: number;
  flags: number;
  reserved: number;
}

function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value >>> 0, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Writes `h` into the first 48 bytes of `block` (the rest must already be zero). */
export function encodeHeader(h: WalHeader, block: Uint8Array): void {
  const v = viewOf(block);
  v.setUint32(0, WAL_MAGIC, true);
  v.setUint32(4, WAL_VERSION, true);
  v.setUint32(8, h.generation >>> 0, true);
  v.setUint32(12, h.epoch >>> 0, true);
  setU64(v, 16, h.headLsn);
  setU64(v, 24, h.headPos);
  v.setUint32(32, h.headPrevCrc >>> 0, true);
  v.setUint32(36, h.blockSize, true);
  v.setUint32(40, h.areaBlocks, true);
  v.setUint32(44, crc32(block.subarray(0, 44)), true);
}

export type DecodedHeader =
  | { ok: true; header: WalHeader }
  | { ok: false; reason: 'magic' | 'crc' | 'version' | 'field'; version?: number };

/** Parses a header slot. Never throws: bytes from disk are judged, not trusted. */
export function decodeHeader(block: Uint8Array): DecodedHeader {
  if (block.byteLength < HEADER_SIZE) return { ok: false, reason: 'magic' };
  const v = viewOf(block);
  if (v.getUint32(0, true) !== WAL_MAGIC) return { ok: false, reason: 'magic' };
  if (v.getUint32(44, true) !== crc32(block.subarray(0, 44))) return { ok: false, reason: 'crc' };
  const version = v.getUint32(4, true);
  if (version !== WAL_VERSION) return { ok: false, reason: 'version', version };
  const header: WalHeader = {
    generation: v.getUint32(8, true),
    epoch: v.getUint32(12, true),
    headLsn: getU64(v, 16),
    headPos: getU64(v, 24),
    headPrevCrc: v.getUint32(32, true),
    blockSize: v.getUint32(36, true),
    areaBlocks: v.getUint32(40, true),
  };
  if (!Number.isSafeInteger(header.headLsn) || header.headLsn < 1 || !Number.isSafeInteger(header.headPos)) {
    return { ok: false, reason: 'field' };
  }
  return { ok: true, header };
}

/** Writes a record header at `offset` of `buf`; the crc field is filled by `sealRecord`. */
export function encodeRecordHeader(buf: Uint8Array, offset: number, h: Omit<RecordHeader, 'crc'>): void {
  const v = new DataView(buf.buffer, buf.byteOffset + offset, RECORD_HEADER_SIZE);
  v.setUint32(4, h.prevCrc >>> 0, true);
  setU64(v, 8, h.lsn);
  setU64(v, 16, h.durableLsn);
  v.setUint32(24, h.epoch >>> 0, true);
  v.setUint32(28, h.length, true);
  v.setUint8(32, h.type);
  v.setUint8(33, h.flags);
  v.setUint16(34, h.reserved, true);
}

/**
 * Writes a record header (all 36 bytes but the crc) at byte `offset` of `view`: the batch path's variant of
 * `encodeRecordHeader`, with no object and no DataView per record.
 */
export function writeRecordHeader(
  view: DataView,
  offset: number,
  prevCrc: number,
  lsn: number,
  durableLsn: number,
  epoch: number,
  length: number,
  type: number,
  flags: number,
): void {
  view.setUint32(offset + 4, prevCrc >>> 0, true);
  setU64(view, offset + 8, lsn);
  setU64(view, offset + 16, durableLsn);
  view.setUint32(offset + 24, epoch >>> 0, true);
  view.setUint32(offset + 28, length, true);
  view.setUint8(offset + 32, type);
  view.setUint8(offset + 33, flags);
  view.setUint16(offset + 34, 0, true);
}

/** The crc of a record: CRC of header bytes 4..35, continued over the payload. */
export function recordCrc(header: Uint8Array, payload: Uint8Array): number {
  return crc32(payload, crc32(header.subarray(4, RECORD_HEADER_SIZE)));
}

export function decodeRecordHeader(bytes: Uint8Array): RecordHeader {
  const v = viewOf(bytes);
  return {
    crc: v.getUint32(0, true),
    prevCrc: v.getUint32(4, true),
    lsn: getU64(v, 8),
    durableLsn: getU64(v, 16),
    epoch: v.getUint32(24, true),
    length: v.getUint32(28, true),
    type: v.getUint8(32),
    flags: v.getUint8(33),
    reserved: v.getUint16(34, true),
  };
}

export function setRecordCrc(buf: Uint8Array, offset: number, crc: number): void {
  new DataView(buf.buffer, buf.byteOffset + offset, 4).setUint32(0, crc >>> 0, true);
}
