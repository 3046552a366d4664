import { CorruptionError } from '@vde/block-device';
import { ByteReader, ByteWriter } from './bytes.js';

/** Log record types (FORMAT.md, "Log records"). */
export const LOG_PUT = 1;
export const LOG_DEL = 2;
export const LOG_BATCH = 3;
/**
 * A checkpoint-only change (a named snapshot created or deleted) follows: no operation to replay. It gives that
 * checkpoint a log position of its own, so that if its superblock is later damaged, the truncated log shows that a
 * newer checkpoint existed (ERR_VDE_CORRUPT) instead of the older one being opened without the change.
 */
export const LOG_MARK = 4;

export type LogOp = { type: 'put'; key: Uint8Array; record: Uint8Array } | { type: 'del'; key: Uint8Array };

export function encodePut(key: Uint8Array, record: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + key.byteLength + record.byteLength);
  out[0] = key.byteLength & 0xff;
  out[1] = key.byteLength >>> 8;
  out.set(key, 2);
  out.set(record, 2 + key.byteLength);
  return out;
}

export function encodeDel(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + key.byteLength);
  out[0] = key.byteLength & 0xff;
  out[1] = key.byteLength >>> 8;
  out.set(key, 2);
  return out;
}

export function encodeBatch(ops: readonly LogOp[]): Uint8Array {
  let size = 4;
  for (const op of ops) size += 3 + op.key.byteLength + (op.type === 'put' ? 4 + op.record.byteLength : 0);
  const w = new ByteWriter(size).u32(ops.length);
  for (const op of ops) {
    w.u8(op.type === 'put' ? 1 : 2)
      .u16(op.key.byteLength)
      .bytes(op.key);
    if (op.type === 'put') w.u32(op.record.byteLength).bytes(op.record);
  }
  return w.finish();
}

/** Decodes one log record into the operations it applies, in order. */
export function decodeLogRecord(type: number, payload: Uint8Array, lsn: number): LogOp[] {
  const what = `log record ${lsn}`;
  const r = new ByteReader(payload, what);
  if (type === LOG_PUT) {
    const key = r.take(r.u16());
    return [{ type: 'put', key, record: r.take(r.remaining) }];
  }
  if (type === LOG_DEL) {
    const key = r.take(r.u16());
    return [{ type: 'del', key }];
  }
  if (type === LOG_BATCH) {
    const count = r.u32();
    if (count > payload.byteLength / 3) throw new CorruptionError(what, `batch claims ${count} operations`);
    const ops: LogOp[] = [];
    for (let i = 0; i < count; i++) {
      const op = r.u8();
      const key = r.take(r.u16());
      if (op === 1) ops.push({ type: 'put', key, record: r.take(r.u32()) });
      else if (op === 2) ops.push({ type: 'del', key });
      else throw new CorruptionError(what, `unknown batch operation ${op}`);
    }
    return ops;
  }
  if (type === LOG_MARK) {
    if (payload.byteLength !== 0) throw new CorruptionError(what, `a mark record holds ${payload.byteLength} bytes`);
    return [];
  }
  throw new CorruptionError(what, `unknown log record type ${type}`);
}
