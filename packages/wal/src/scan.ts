import { CorruptionError } from '@vde/block-device';
import type { AreaReader } from './area-reader.js';
import {
  decodeRecordHeader,
  FLAG_END_OF_BATCH,
  RECORD_HEADER_SIZE,
  recordCrc,
  type RecordHeader,
  type WalHeader,
} from './format.js';

export type StoppedAt = 'end' | 'torn' | 'empty';

/** What the recovery scan found: the live records' positions and chain values, and where the log ends. */
export interface ScanResult {
  /** Virtual positions of records headLsn, headLsn+1, … (parallel to `crcs`). */
  positions: number[];
  crcs: number[];
  lastLsn: number;
  /** The crc of record `lastLsn` (the header's headPrevCrc if no record was found). */
  lastCrc: number;
  /** Virtual position just after the last valid record (headPos if none). */
  endPos: number;
  stoppedAt: StoppedAt;
  /** The highest LSN that some valid record proves was durable (its `durableLsn` field), or headLsn - 1. */
  knownDurableLsn: number;
}

/**
 * Scans the log from the header's head: follows the chain (epoch, lsn + 1, prevCrc, crc) until the first record
 * that does not fit, reading at most one circle of the area. Then looks at each later block boundary, up to one
 * circle from the head, for a valid record of this epoch that proves the bad record had been acknowledged
 * (`durableLsn >= bad lsn`): that is damage in the middle of the log and throws `CorruptionError('wal', …)`.
 */
export async function scanLog(reader: AreaReader, header: WalHeader, blockSize: number): Promise<ScanResult> {
  const areaBytes = header.areaBlocks * blockSize;
  const limit = header.headPos + areaBytes; // one circle: no valid chain can be longer
  const positions: number[] = [];
  const crcs: number[] = [];
  let pos = header.headPos;
  let expected = header.headLsn;
  let prevCrc = header.headPrevCrc;
  let endPos = pos;
  let stoppedAt: StoppedAt = 'end';

  let knownDurableLsn = header.headLsn - 1;
  let midBatch = false; // the previous record did not end its batch
  for (;;) {
    let found = await tryRecord(reader, header, pos, limit, expected, prevCrc);
    if (!found.valid && midBatch && pos % blockSize !== 0) {
      // A batch cut short by a crash: recovery then started the next batch at the next block boundary.
      const aligned = Math.ceil(pos / blockSize) * blockSize;
      const retry = await tryRecord(reader, header, aligned, limit, expected, prevCrc);
      if (retry.valid) pos = aligned;
      found = retry.valid ? retry : { ...found, ours: found.ours || retry.ours };
    }
    if (!found.valid) {
      if (found.ours) stoppedAt = 'torn';
      break;
    }
    positions.push(pos);
    crcs.push(found.crc);
    knownDurableLsn = Math.max(knownDurableLsn, Math.min(found.durableLsn, expected - 1));
    prevCrc = found.crc;
    expected++;
    pos += RECORD_HEADER_SIZE + found.length;
    endPos = pos;
    midBatch = !found.endOfBatch;
    if (found.endOfBatch) pos = Math.ceil(pos / blockSize) * blockSize;
  }
  if (positions.length === 0 && stoppedAt !== 'torn') stoppedAt = 'empty';

  await lookAhead(reader, header, blockSize, pos, expected);
  return { positions, crcs, lastLsn: expected - 1, lastCrc: prevCrc, endPos, stoppedAt, knownDurableLsn };
}

interface Probe {
  valid: boolean;
  /** The header has this log's epoch and the expected LSN: a record of ours, maybe torn. */
  ours: boolean;
  crc: number;
  length: number;
  endOfBatch: boolean;
  durableLsn: number;
}

/** Checks whether the record at `pos` is the next one of the chain (epoch, lsn, prevCrc, length, crc). */
async function tryRecord(
  reader: AreaReader,
  header: WalHeader,
  pos: number,
  limit: number,
  expected: number,
  prevCrc: number,
): Promise<Probe> {
  const invalid: Probe = { valid: false, ours: false, crc: 0, length: 0, endOfBatch: false, durableLsn: 0 };
  if (pos + RECORD_HEADER_SIZE > limit) return invalid;
  const headerBytes = (await reader.bytes(pos, RECORD_HEADER_SIZE)).slice();
  const h = decodeRecordHeader(headerBytes);
  const ours = h.epoch === header.epoch && h.lsn === expected;
  const fits = pos + RECORD_HEADER_SIZE + h.length <= limit; // caps the length before anything is allocated
  if (!ours || !fits || h.prevCrc !== prevCrc || !knownBits(h)) return { ...invalid, ours };
  const payload = await reader.bytes(pos + RECORD_HEADER_SIZE, h.length);
  if (recordCrc(headerBytes, payload) !== h.crc) return { ...invalid, ours };
  return { valid: true, ours, crc: h.crc, length: h.length, endOfBatch: (h.flags & FLAG_END_OF_BATCH) !== 0, durableLsn: h.durableLsn };
}

function knownBits(h: RecordHeader): boolean {
  return (h.flags & ~FLAG_END_OF_BATCH) === 0 && h.reserved === 0;
}

/** Throws CorruptionError if a later batch proves that record `badLsn` (at `badPos`) had been acknowledged. */
async function lookAhead(
  reader: AreaReader,
  header: WalHeader,
  blockSize: number,
  badPos: number,
  badLsn: number,
): Promise<void> {
  const areaBytes = header.areaBlocks * blockSize;
  const endBlock = Math.floor(header.headPos / blockSize) + header.areaBlocks; // exclusive, one circle
  for (let block = Math.floor(badPos / blockSize) + 1; block < endBlock; block++) {
    const pos = block * blockSize;
    const headerBytes = (await reader.bytes(pos, RECORD_HEADER_SIZE)).slice();
    const h = decodeRecordHeader(headerBytes);
    if (h.epoch !== header.epoch || h.lsn <= badLsn || h.durableLsn < badLsn || h.durableLsn >= h.lsn) continue;
    if (!knownBits(h) || RECORD_HEADER_SIZE + h.length > areaBytes) continue;
    const payload = await reader.bytes(pos + RECORD_HEADER_SIZE, h.length);
    if (recordCrc(headerBytes, payload) !== h.crc) continue;
    throw new CorruptionError(
      'wal',
      `record ${badLsn} is damaged or missing, but record ${h.lsn} written after it says records up to ` +
        `${h.durableLsn} were durable: the middle of the log is corrupt (acknowledged writes would be lost)`,
    );
  }
}
