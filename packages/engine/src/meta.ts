import { CorruptionError, crc32 } from '@vde/block-device';
import { ByteReader, ByteWriter, viewOf } from './bytes.js';
import { decodeUtf8, encodeUtf8 } from './keys.js';

/**
 * Checkpoint meta blob (FORMAT.md, "Meta blob"): allocator image, deferred frees held for snapshots, named
 * snapshots; CRC-32 at the end. Written copy-on-write to fresh blocks at every checkpoint.
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
}

const MAGIC = 0x4d454456; // "VDEM" little-endian

export function encodeMeta(m: MetaBlob): Uint8Array {
  const w = new ByteWriter(64 + m.allocatorImage.byteLength + m.deferred.length * 20)
    .u32(MAGIC)
    .u32(1)
    .u32(m.allocatorImage.byteLength)
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
  if (r.u32() !== 1) throw new CorruptionError(what, 'unknown version');
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
  return { allocatorImage, deferred, snapshots };
}
