import type { Extent } from '@vde/allocator';
import { CorruptionError, crc32 } from '@vde/block-device';
import { ByteReader, ByteWriter, viewOf } from './bytes.js';
import { decodeUtf8, encodeUtf8 } from './keys.js';

/**
 * Checkpoint meta blob (FORMAT.md, "Meta blob, version 1" and "version 2"): allocator image, deferred frees held for
 * snapshots, named snapshots; CRC-32 at the end. Written copy-on-write to fresh blocks at every checkpoint.
 * Version 1 is one run. Version 2 may span several runs: its header lists the continuation extents (the list
 * continues into the runs it lists, each entry in the runs before it), and it lists the runs of the meta blob it
 * replaced apart from the deferred entries.
 * Invariant: the blob's bitmap marks every block of every run of the blob used.
 */
export interface DeferredEntry {
  start: number;
  count: number;
  /** The checkpoint generation that was current when the blocks were freed (it, and older ones, may reference them). */
  generation: number;
}

export interface NamedSnapshotRecord {
  name: string;
  generation: number;
  root: number;
  createdMs: number;
  objectCount: number;
}

export interface MetaBlob {
  allocatorImage: Uint8Array;
  deferred: DeferredEntry[];
  snapshots: NamedSnapshotRecord[];
  /** Version 2 only: the runs after the first one (the superblock names the first), in the order they are read. */
  extents?: Extent[];
  /** Version 2 only: the runs of the meta blob this checkpoint replaced (not among `deferred`). */
  replacedMeta?: DeferredEntry[];
}


const MAGIC = 0x4d454456; // "VDEM" little-endian

/** Encodes version 1 unless `extents` or `replacedMeta` is given (version 2). */
export function encodeMeta(m: MetaBlob): Uint8Array {
  const v2 = m.extents !== undefined || m.replacedMeta !== undefined;
  const extents = m.extents ?? [];
  const replaced = m.replacedMeta ?? [];
  const w = new ByteWriter(64 + m.allocatorImage.byteLength + m.deferred.length * 20 + extents.length * 12 + replaced.length * 20)
    .u32(MAGIC)
    .u32(v2 ? 2 : 1);
  if (v2) {
    w.u32(extents.length);
    for (const e of extents) w.u64(e.start).u32(e.count);
    w.u32(replaced.length);
    for (const d of replaced) w.u64(d.start).u32(d.count).u64(d.generation);
  }
  w.u32(m.allocatorImage.byteLength)
    .bytes(m.allocatorImage)
    .u32(m.deferred.length);
  for (const d of m.deferred) w.u64(d.start).u32(d.count).u64(d.generation);
  w.u32(m.snapshots.length);
  for (const s of m.snapshots) {
    const name = encodeUtf8(s.name);
    w.u16(name.byteLength).bytes(name).u64(s.generation).u64(s.root).u64(s.createdMs).u64(s.objectCount);
  }
  const body = w.finish();
  return new ByteWriter(body.byteLength + 4).bytes(body).u32(crc32(body)).finish();
}

/** `generation` is the superblock's: nothing the blob lists may be newer than the checkpoint that wrote it. */
export function decodeMeta(bytes: Uint8Array, blockCount: number, generation: number): MetaBlob {
  const what = 'checkpoint meta blob';
  if (bytes.byteLength < 16) throw new CorruptionError(what, 'too short');
  const body = bytes.subarray(0, bytes.byteLength - 4);
  if (viewOf(bytes).getUint32(bytes.byteLength - 4, true) !== crc32(body)) throw new CorruptionError(what, 'checksum mismatch');
  const r = new ByteReader(body, what);
  if (r.u32() !== MAGIC) throw new CorruptionError(what, 'bad magic');
  const version = r.u32();
  if (version !== 1 && version !== 2) throw new CorruptionError(what, 'unknown version');
  let extents: Extent[] | undefined;
  let replacedMeta: DeferredEntry[] | undefined;
  if (version === 2) {
    const e = r.u32();
    if (e * 12 > r.remaining) throw new CorruptionError(what, `claims ${e} extents`);
    extents = [];
    for (let i = 0; i < e; i++) extents.push({ start: r.u64(), count: r.u32() });
    const p = r.u32();
    if (p * 20 > r.remaining) throw new CorruptionError(what, `claims ${p} replaced meta blob extents`);
    replacedMeta = [];
    for (let i = 0; i < p; i++) {
      const d = { start: r.u64(), count: r.u32(), generation: r.u64() };
      if (d.count < 1 || d.start + d.count > blockCount || d.generation > generation) {
        throw new CorruptionError(what, 'replaced meta blob extent out of range');
      }
      replacedMeta.push(d);
    }
  }
  const allocatorImage = r.take(r.u32());
  const n = r.u32();
  if (n * 20 > r.remaining) throw new CorruptionError(what, `claims ${n} deferred entries`);
  const deferred: DeferredEntry[] = [];
  for (let i = 0; i < n; i++) {
    const d = { start: r.u64(), count: r.u32(), generation: r.u64() };
    if (d.count < 1 || d.start + d.count > blockCount || d.generation > generation) {
      throw new CorruptionError(what, 'deferred entry out of range');
    }
    deferred.push(d);
  }
  const s = r.u32();
  if (s * 34 > r.remaining) throw new CorruptionError(what, `claims ${s} snapshots`);
  const snapshots: NamedSnapshotRecord[] = [];
  for (let i = 0; i < s; i++) {
    const name = decodeUtf8(r.take(r.u16()), what);
    const rec = { name, generation: r.u64(), root: r.u64(), createdMs: r.u64(), objectCount: r.u64() };
    if (rec.root >= blockCount) throw new CorruptionError(what, `snapshot ${name} root out of range`);
    // A snapshot newer than the checkpoint listing it would never be compared with a freed block: its pages would
    // be reused under it.
    if (rec.generation > generation) throw new CorruptionError(what, `snapshot ${name} is newer than its checkpoint`);
    if (snapshots.some((o) => o.name === name)) throw new CorruptionError(what, `snapshot ${name} is listed twice`);
    snapshots.push(rec);
  }
  if (r.remaining !== 0) throw new CorruptionError(what, 'trailing bytes');
  return extents && replacedMeta ? { allocatorImage, deferred, snapshots, extents, replacedMeta } : { allocatorImage, deferred, snapshots };
}

/**
 * The number of continuation extents a version 2 blob lists (FORMAT.md, "Meta blob, version 2"), or undefined for a
 * version 1 blob. `first` is what was read of the first run. Entry i (from 0) of the list is bytes
 * metaExtentEntry(i) … +12 of the logical blob: always in the runs before extent i (each run holds a block, 512
 * bytes or more), so a reader reads run after run and finds each one's entry in what it has read.
 */
export function metaExtentCount(first: Uint8Array): number | undefined {
  const what = 'checkpoint meta blob';
  if (first.byteLength < 12) throw new CorruptionError(what, 'too short');
  const v = viewOf(first);
  if (v.getUint32(0, true) !== MAGIC) throw new CorruptionError(what, 'bad magic');
  const version = v.getUint32(4, true);
  if (version === 1) return undefined;
  if (version !== 2) throw new CorruptionError(what, 'unknown version');
  return v.getUint32(8, true);
}

/** Where continuation extent entry `i` (from 0) starts in a version 2 blob: start block (u64), block count (u32). */
export function metaExtentEntry(i: number): number {
  return 12 + 12 * i;
}

/**
 * The superblock's meta blob CRC (offset 80): the CRC-32 of the blob before its own trailing CRC, i.e. the same value
 * as that trailer. It names one blob's contents: a run reused by another intact blob of the same length no longer
 * passes for the blob a superblock names (FORMAT.md, "Meta blob").
 */
export function metaChecksum(blob: Uint8Array): number {
  return crc32(blob.subarray(0, blob.byteLength - 4));
}

/**
 * What releases before the meta checksum above wrote at offset 80: the CRC-32 of the whole blob, trailer included,
 * which is this constant (the CRC-32 residue) for every intact blob.
 */
export const LEGACY_META_CHECKSUM = 0x2144df1c;

/** Whether `blob` is the one a superblock with meta CRC `expected` names (a legacy superblock: any intact blob). */
export function metaMatches(blob: Uint8Array, expected: number): boolean {
  if (blob.byteLength < 4) return false;
  if (metaChecksum(blob) === expected) return true;
  return expected === LEGACY_META_CHECKSUM && crc32(blob) === LEGACY_META_CHECKSUM;
}
