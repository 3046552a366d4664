import type { Extent } from '@vde/allocator';
import { CorruptionError } from '@vde/block-device';
import { ByteReader, ByteWriter } from './bytes.js';
import { decodeUtf8 } from './keys.js';

/**
 * Object record: the index value of a key (layout in FORMAT.md, "Object record").
 * Kind 1 holds the bytes inline, kind 2 lists extents, kind 3 points at a run of blocks holding a kind 1/2 record.
 * Invariant: `crc` is the CRC-32 of exactly `size` bytes; kind 2 extents hold at least `size` bytes.
 */
export interface ObjectRecord {
  size: number;
  createdMs: number;
  modifiedMs: number;
  crc: number;
  nonce: number;
  metadata: Uint8Array;
  inline?: Uint8Array;
  extents?: Extent[];
}

export interface IndirectPointer {
  start: number;
  blocks: number;
  length: number;
  crc: number;
}

export const KIND_INLINE = 1;
export const KIND_EXTENTS = 2;
export const KIND_INDIRECT = 3;
export const INDIRECT_BYTES = 21;
const HEADER = 37;

export function recordBytesFor(metadataBytes: number, inlineBytes: number, extentCount: number): number {
  return HEADER + metadataBytes + (extentCount > 0 ? 4 + 12 * extentCount : inlineBytes);
}

export function encodeRecord(r: ObjectRecord): Uint8Array {
  const w = new ByteWriter(HEADER + r.metadata.byteLength + (r.inline?.byteLength ?? 4 + 12 * (r.extents?.length ?? 0)));
  w.u8(r.extents ? KIND_EXTENTS : KIND_INLINE)
    .u64(r.size)
    .u64(r.createdMs)
    .u64(r.modifiedMs)
    .u32(r.crc)
    .u32(r.nonce)
    .u32(r.metadata.byteLength)
    .bytes(r.metadata);
  if (r.extents) {
    w.u32(r.extents.length);
    for (const e of r.extents) w.u64(e.start).u32(e.count);
  } else {
    w.bytes(r.inline ?? new Uint8Array(0));
  }
  return w.finish();
}

export function encodeIndirect(p: IndirectPointer): Uint8Array {
  return new ByteWriter(INDIRECT_BYTES).u8(KIND_INDIRECT).u64(p.start).u32(p.blocks).u32(p.length).u32(p.crc).finish();
}

export function recordKind(bytes: Uint8Array, what: string): number {
  const kind = bytes[0];
  if (kind !== KIND_INLINE && kind !== KIND_EXTENTS && kind !== KIND_INDIRECT) {
    throw new CorruptionError(what, `unknown object record kind ${String(kind)}`);
  }
  return kind;
}

export function decodeIndirect(bytes: Uint8Array, what: string, blockCount: number, blockSize: number): IndirectPointer {
  const r = new ByteReader(bytes, what);
  if (r.u8() !== KIND_INDIRECT) throw new CorruptionError(what, 'not an indirect record');
  const p = { start: r.u64(), blocks: r.u32(), length: r.u32(), crc: r.u32() };
  if (p.blocks < 1 || p.start + p.blocks > blockCount || p.length > p.blocks * blockSize || p.length < HEADER) {
    throw new CorruptionError(what, 'indirect record pointer is out of range');
  }
  return p;
}

/** Decodes a kind 1 or 2 record; every length is checked against the bytes present and the device size. */
export function decodeRecord(bytes: Uint8Array, what: string, blockCount: number, blockSize: number): ObjectRecord {
  const r = new ByteReader(bytes, what);
  const kind = r.u8();
  if (kind !== KIND_INLINE && kind !== KIND_EXTENTS) throw new CorruptionError(what, `unexpected record kind ${kind}`);
  const size = r.u64();
  const createdMs = r.u64();
  const modifiedMs = r.u64();
  const crc = r.u32();
  const nonce = r.u32();
  const metaLen = r.u32();
  const metadata = r.take(metaLen);
  if (kind === KIND_INLINE) {
    const inline = r.take(size);
    if (r.remaining !== 0) throw new CorruptionError(what, 'trailing bytes after inline data');
    return { size, createdMs, modifiedMs, crc, nonce, metadata, inline };
  }
  const count = r.u32();
  if (count * 12 !== r.remaining) throw new CorruptionError(what, `extent count ${count} does not match the record length`);
  const extents: Extent[] = [];
  let blocks = 0;
  for (let i = 0; i < count; i++) {
    const start = r.u64();
    const n = r.u32();
    if (n < 1 || start + n > blockCount) throw new CorruptionError(what, `extent ${start}+${n} is outside the container`);
    extents.push({ start, count: n });
    blocks += n;
  }
  if (blocks * blockSize < size || (size > 0 && (blocks - 1) * blockSize >= size)) {
    throw new CorruptionError(what, `extents hold ${blocks} blocks for ${size} bytes`);
  }
  return { size, createdMs, modifiedMs, crc, nonce, metadata, extents };
}

export function parseMetadata(bytes: Uint8Array, what: string): Record<string, string> {
  if (bytes.byteLength === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(decodeUtf8(bytes));
  } catch {
    throw new CorruptionError(what, 'metadata is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CorruptionError(what, 'metadata is not an object');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new CorruptionError(what, 'metadata value is not a string');
    out[k] = v;
  }
  return out;
}

export function etagOf(r: ObjectRecord): string {
  return `${r.crc.toString(16).padStart(8, '0')}${r.nonce.toString(16).padStart(8, '0')}`;
}
