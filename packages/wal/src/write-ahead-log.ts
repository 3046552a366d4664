import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import {
  ClosedError,
  CorruptionError,
  crc32,
  FormatError,
  InvalidArgumentError,
  OutOfRangeError,
  PoisonedError,
  TooLargeError,
  toIoError,
  type BlockDevice,
  type VdeError,
} from '@vde/block-device';
import { AreaReader } from './area-reader.js';
import {
  decodeHeader,
  decodeRecordHeader,
  encodeHeader,
  FLAG_END_OF_BATCH,
  HEADER_BLOCKS,
  MAX_U32,
  RECORD_HEADER_SIZE,
  recordCrc,
  writeRecordHeader,
  type WalHeader,
} from './format.js';
import { scanLog, type StoppedAt } from './scan.js';

/** The blocks of the device the log owns: header slots A and B, then the circular record area. */
export interface WalRegion {
  startBlock: number;
  blockCount: number;
}

export interface WalRecord {
  lsn: number;
  type: number;
  payload: Uint8Array;
}

export interface WalTailInfo {
  /** The last valid record `open()` found (headLsn - 1 if none; 0 for a new log). */
  lastLsn: number;
  stoppedAt: StoppedAt;
  /**
   * The highest LSN the log itself proves was durable before the crash (a later record carried it as its
   * `durableLsn`). Records above it and up to `lastLsn` may have been written but never acknowledged.
   */
  knownDurableLsn: number;
}

export interface WalStats {
  /** Records written by batches. */
  records: number;
  /** Syncs made by the log (batches, headers, open): `device.sync()` calls and `device.writeDurable()` calls. */
  syncs: number;
  /** Batch writes that carried records. */
  batches: number;
  meanBatch: number;
  maxBatch: number;
  /** Bytes the log wrote: batches (with padding) and headers. */
  bytesWritten: number;
  /** Batches started while another durable batch was still in flight (see "Group commit" in the README). */
  overlappedBatches: number;
  /** Batches started before the end of the turn because a write's worth of durable records was queued. */
  eagerBatches: number;
  /** Batches written on the calling thread with the device's `writeDurableSync` (see `AppendOptions.inline`). */
  inlineBatches: number;
}

export interface AppendOptions {
  /** Resolve only once the record is durable (default true); false resolves once it is written. */
  durable?: boolean;
  /**
   * The caller has nothing else in flight that could use the thread while this record's write waits for the
   * disk (a lone writer). A durable record that then forms a batch on its own, with no batch in flight, may be
   * written with the device's `writeDurableSync` on the calling thread, skipping the hop to libuv's thread pool,
   * while the log's recent lone durable writes averaged under 2 ms (see "Inline commits" in the README).
   * Default false.
   */
  inline?: boolean;
}

interface PendingAppend {
  lsn: number;
  type: number;
  payload: Uint8Array;
  durable: boolean;
  inline: boolean;
  resolve: (lsn: number) => void;
  reject: (err: unknown) => void;
}

interface SyncWaiter {
  target: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface LogState {
  header: WalHeader;
  positions: number[];
  crcs: number[];
  lastLsn: number;
  lastCrc: number;
  nextBatchPos: number;
  tailInfo: WalTailInfo;
}

const MIN_REGION_BLOCKS = HEADER_BLOCKS + 2;
/** Most durable batches in flight at once (see `#pump`). */
const MAX_IN_FLIGHT = 2;
/** Queued durable bytes that start a batch at once (beside a durable batch in flight) instead of at the end of the turn. */
const EAGER_BYTES = 32 * 1024;
/**
 * A lone record is written on the calling thread only while the log's lone durable writes have recently taken under
 * this many microseconds (a moving average): a slow disk never stalls the caller's event loop for long.
 */
const INLINE_MAX_MICROS = 2000;

/**
 * A write-ahead log in a fixed region of a block device, with group commit and torn-tail recovery.
 * The on-disk format and the guarantees are in the package README.
 *
 * Thread safety / awaits: one instance per region, one thread. Forming a batch (LSN positions, the checksum chain,
 * space accounting) is synchronous. Critical sections split by an await: `#runBatch` (write, then sync; only one
 * batch is in flight, appends queue meanwhile) and `truncate` (header write + sync; freed space becomes usable only
 * after the sync, truncates run one at a time).
 *
 * Invariants:
 * - records [headLsn, formed] are indexed in `#positions`/`#crcs` (virtual byte positions, increasing);
 * - a batch starts at a block boundary at or after the end of the previous one and never reaches the block that
 *   holds `#headPos` again (used blocks <= area blocks);
 * - `#durableLsn <= #writtenLsn <= formed LSN <= #lastLsn`.
 */
export class WriteAheadLog {
  readonly #device: BlockDevice;
  readonly #startBlock: number;
  readonly #bs: number;
  readonly #areaBlocks: number;
  readonly #areaBytes: number;
  readonly #epoch: number;
  #generation: number;
  #headLsn: number;
  /** Virtual position of record headLsn (area byte = position mod areaBytes). */
  #headPos: number;
  #positions: number[];
  #crcs: number[];
  /** Index in #positions/#crcs of record #headLsn (entries before it are dead, compacted now and then). */
  #indexStart = 0;
  #lastCrc: number;
  #nextBatchPos: number;
  #lastLsn: number;
  #writtenLsn: number;
  #durableLsn: number;
  readonly #tailInfo: WalTailInfo;

  #queue: PendingAppend[] = [];
  /** Record bytes (header + payload) of the appends in `#queue`. */
  #queuedBytes = 0;
  /** EAGER_BYTES, or a quarter of the record area if that is less (a small log must not wait for 32 KiB). */
  readonly #eagerBytes: number;
  /** Moving average of how long lone durable batch writes took, in microseconds (see `#inlineOk`). */
  #loneWriteMicros = 0;
  /** An inline pump is scheduled (`#scheduleInline`); set while it runs: only then is a batch written inline. */
  #inlineScheduled = false;
  #inlineTurn = false;
  #syncWaiters: SyncWaiter[] = [];
  /** Batches written but not yet settled: up to MAX_IN_FLIGHT, more than one only when all are durable writes. */
  #inFlight = 0;
  /** Whether the batches in flight may have another started beside them (false when one of them is not durable). */
  #inFlightPipelinable = false;
  /** A batch in flight has failed; it poisons the log once the batch before it settles. */
  #failedInFlight = false;
  /** The last batch started; it settles after every earlier one (batches settle in order). */
  #currentBatch: Promise<void> = Promise.resolve();
  #pumpScheduled = false;
  #truncating: Promise<void> = Promise.resolve();
  #poisoned: PoisonedError | undefined;
  #closing = false;
  #closePromise: Promise<void> | undefined;

  readonly #stats = { records: 0, syncs: 0, batches: 0, maxBatch: 0, bytesWritten: 0, overlappedBatches: 0, eagerBatches: 0, inlineBatches: 0 };

  private constructor(device: BlockDevice, region: WalRegion, state: LogState, extraSyncs: number, extraBytes: number) {
    this.#device = device;
    this.#startBlock = region.startBlock;
    this.#bs = device.blockSize;
    this.#areaBlocks = region.blockCount - HEADER_BLOCKS;
    this.#areaBytes = this.#areaBlocks * this.#bs;
    this.#eagerBytes = Math.min(EAGER_BYTES, Math.floor(this.#areaBytes / 4));
    this.#epoch = state.header.epoch;
    this.#generation = state.header.generation;
    this.#headLsn = state.header.headLsn;
    this.#headPos = state.header.headPos;
    this.#positions = state.positions;
    this.#crcs = state.crcs;
    this.#lastCrc = state.lastCrc;
    this.#nextBatchPos = state.nextBatchPos;
    this.#lastLsn = state.lastLsn;
    this.#writtenLsn = state.lastLsn;
    this.#durableLsn = state.lastLsn;
    this.#tailInfo = state.tailInfo;
    this.#stats.syncs = extraSyncs;
    this.#stats.bytesWritten = extraBytes;
  }

  /** Formats an empty log in `region` (both header slots written, then synced). The first LSN is 1. */
  static async create(device: BlockDevice, region: WalRegion): Promise<WriteAheadLog> {
    checkRegion(device, region);
    const bs = device.blockSize;
    const old = await ioStep('wal: reading the header', () => device.read(region.startBlock, HEADER_BLOCKS));
    const oldEpochs = new Set<number>();
    for (let slot = 0; slot < HEADER_BLOCKS; slot++) {
      const d = decodeHeader(old.subarray(slot * bs, (slot + 1) * bs));
      if (d.ok) oldEpochs.add(d.header.epoch);
    }
    let epoch = 0;
    while (epoch === 0 || oldEpochs.has(epoch)) epoch = randomInt(1, 0x1_0000_0000 - 1);
    const header: WalHeader = {
      generation: 1,
      epoch,
      headLsn: 1,
      headPos: 0,
      headPrevCrc: 0,
      blockSize: bs,
      areaBlocks: region.blockCount - HEADER_BLOCKS,
    };
    // Generation 1 goes to slot 1 (B); slot A gets the same header as generation 0, so that no header of an earlier
    // log there can win and one damaged slot still leaves the log readable until the next header write (generation 2,
    // slot A) replaces the copy. Without it, a log never truncated had one header: a flipped bit lost the whole log.
    const slots = new Uint8Array(HEADER_BLOCKS * bs);
    encodeHeader({ ...header, generation: 0 }, slots.subarray(0, bs));
    encodeHeader(header, slots.subarray(bs, 2 * bs));
    await ioStep('wal: writing the header', () => device.write(region.startBlock, slots));
    await ioStep('wal: syncing the header', () => device.sync());
    const state: LogState = {
      header,
      positions: [],
      crcs: [],
      lastLsn: 0,
      lastCrc: 0,
      nextBatchPos: 0,
      tailInfo: { lastLsn: 0, stoppedAt: 'empty', knownDurableLsn: 0 },
    };
    return new WriteAheadLog(device, region, state, 1, slots.byteLength);
  }

  /**
   * Opens the log in `region`: picks the valid header slot with the highest generation, scans from the head to
   * the tail, syncs the device. `FormatError` without a valid header; `CorruptionError('wal', …)` when a later
   * batch proves that a damaged record had been acknowledged.
   */
  static async open(device: BlockDevice, region: WalRegion): Promise<WriteAheadLog> {
    checkRegion(device, region);
    const bs = device.blockSize;
    const areaBlocks = region.blockCount - HEADER_BLOCKS;
    const slots = await ioStep('wal: reading the header', () => device.read(region.startBlock, HEADER_BLOCKS));
    let header: WalHeader | undefined;
    let newerVersion: number | undefined;
    for (let slot = 0; slot < HEADER_BLOCKS; slot++) {
      const d = decodeHeader(slots.subarray(slot * bs, (slot + 1) * bs));
      if (d.ok) {
        if (!header || d.header.generation > header.generation) header = d.header;
      } else if (d.reason === 'version') {
        newerVersion = d.version;
      }
    }
    if (!header) {
      throw new FormatError(
        newerVersion === undefined
          ? `no valid write-ahead log header in blocks ${region.startBlock}..${region.startBlock + 1}; create the log first`
          : `the write-ahead log has format version ${newerVersion}; this version reads only version 1`,
      );
    }
    if (header.blockSize !== bs || header.areaBlocks !== areaBlocks) {
      throw new FormatError(
        `the write-ahead log was made for ${header.areaBlocks + HEADER_BLOCKS} blocks of ${header.blockSize} bytes; ` +
          `open it with the same region (got ${region.blockCount} blocks of ${bs} bytes)`,
      );
    }
    if (header.headPos >= areaBlocks * bs) {
      throw new CorruptionError('wal', `header head position ${header.headPos} is past the record area`);
    }
    const reader = new AreaReader(device, region.startBlock + HEADER_BLOCKS, areaBlocks, 256);
    const found = header;
    const scan = await ioStep('wal: scanning the log', () => scanLog(reader, found, bs));
    const nextBatchPos = Math.ceil(scan.endPos / bs) * bs;
    let extraBytes = 0;
    if (scan.positions.length === 0 && header.headPos !== nextBatchPos) {
      // The head record was lost (it had not been durable): the next batch starts at the block boundary, so the
      // header must say so, or a later scan from the old mid-block head would miss it.
      header = { ...header, generation: header.generation + 1, headPos: nextBatchPos % (areaBlocks * bs) };
      // A read-only device (a reader of a crashed log) keeps the corrected header in memory: its scans start from
      // it, and a writer that opens the log later makes the same correction on disk.
      if (!device.readOnly) {
        const block = new Uint8Array(bs);
        encodeHeader(header, block);
        const slot = header.generation % HEADER_BLOCKS;
        await ioStep('wal: writing the header', () => device.write(region.startBlock + slot, block));
        extraBytes += bs;
      }
    }
    // Whatever the scan found may still be only in the OS cache: make it durable before anyone relies on it.
    await ioStep('wal: syncing after recovery', () => device.sync());
    const state: LogState = {
      header,
      positions: scan.positions,
      crcs: scan.crcs,
      lastLsn: scan.lastLsn,
      lastCrc: scan.lastCrc,
      nextBatchPos: scan.positions.length === 0 ? header.headPos : nextBatchPos,
      tailInfo: { lastLsn: scan.lastLsn, stoppedAt: scan.stoppedAt, knownDurableLsn: scan.knownDurableLsn },
    };
    return new WriteAheadLog(device, region, state, 1, extraBytes);
  }

  /** What `open()` found at the end of the log. */
  get tailInfo(): WalTailInfo {
    return { ...this.#tailInfo };
  }

  /** The oldest LSN the log still holds (records below it were truncated); lastLsn + 1 when it is empty. */
  get headLsn(): number {
    return this.#headLsn;
  }

  /** Highest LSN appended (written or not). */
  get lastLsn(): number {
    return this.#lastLsn;
  }

  /** Highest LSN known durable. */
  get durableLsn(): number {
    return this.#durableLsn;
  }

  /** Bytes of the record area. */
  get capacityBytes(): number {
    return this.#areaBytes;
  }

  /** Bytes of the record area that hold live records or are reserved by the batch in flight (whole blocks). */
  get usedBytes(): number {
    return this.#usedBlocks() * this.#bs;
  }

  get fillRatio(): number {
    return this.usedBytes / this.#areaBytes;
  }

  /** Upper bound of the bytes a record with this payload occupies: header, payload and the padding it may cause. */
  recordBytes(payloadLength: number): number {
    return RECORD_HEADER_SIZE + payloadLength + this.#bs - 1;
  }

  stats(): WalStats {
    const s = this.#stats;
    return { ...s, meanBatch: s.batches === 0 ? 0 : s.records / s.batches };
  }

  /**
   * Appends a record and resolves with its LSN once it is durable (or, with `durable: false`, once it is written).
   * Waits for space if the area is full (until `truncate` frees some).
   */
  append(type: number, payload: Uint8Array, options?: AppendOptions): Promise<number>;
  /** The short form: a record of type 0 (`append(payload, options)` is `append(0, payload, options)`). */
  append(payload: Uint8Array, options?: AppendOptions): Promise<number>;
  append(
    typeOrPayload: number | Uint8Array,
    payloadOrOptions?: Uint8Array | AppendOptions,
    maybeOptions?: AppendOptions,
  ): Promise<number> {
    let type: number;
    let payload: Uint8Array;
    let options: AppendOptions;
    if (typeOrPayload instanceof Uint8Array) {
      type = 0;
      payload = typeOrPayload;
      options = payloadOrOptions === undefined ? {} : (payloadOrOptions as AppendOptions);
    } else {
      type = typeOrPayload;
      payload = payloadOrOptions as Uint8Array;
      options = maybeOptions === undefined ? {} : maybeOptions;
    }
    // Everything that can fail is checked before the LSN is taken: a taken LSN whose record is never queued would
    // leave a gap that recovery reads as the end of the log (later acknowledged records lost) or as damage.
    let durable: boolean;
    let inline: boolean;
    let copy: Uint8Array;
    try {
      this.#checkUsable();
      if (options === null || typeof options !== 'object') throw new InvalidArgumentError('append options must be an object');
      durable = options.durable ?? true;
      inline = options.inline ?? false;
      if (typeof durable !== 'boolean' || typeof inline !== 'boolean') {
        throw new InvalidArgumentError('append options durable and inline must be booleans');
      }
      if (!Number.isInteger(type) || type < 0 || type > 255) {
        throw new InvalidArgumentError(`record type must be an integer 0..255, got ${String(type)}`);
      }
      if (!(payload instanceof Uint8Array)) throw new InvalidArgumentError('payload must be a Uint8Array');
      // A record holds its LSN below 2^53 (a scan reads a larger one as the end of the log): only a damaged or
      // crafted log gets here, and appending past the limit would drop acknowledged records at the next open.
      if (this.#lastLsn >= Number.MAX_SAFE_INTEGER) {
        throw new CorruptionError('wal', `log sequence number ${this.#lastLsn} cannot grow`);
      }
      if (this.recordBytes(payload.byteLength) > this.#areaBytes || payload.byteLength > MAX_U32) {
        throw new TooLargeError(
          `a record of ${payload.byteLength} bytes does not fit in the ${this.#areaBytes}-byte log area ` +
            `(largest payload: ${this.#areaBytes - this.recordBytes(0)} bytes)`,
        );
      }
      try {
        copy = copyOf(payload);
      } catch (err) {
        // A view of a detached (transferred) buffer cannot be read.
        throw new InvalidArgumentError(`payload cannot be read (${(err as Error).message})`);
      }
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const lsn = ++this.#lastLsn;
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ lsn, type, payload: copy, durable, inline, resolve, reject });
      this.#queuedBytes += RECORD_HEADER_SIZE + payload.byteLength;
      // A write's worth of durable appends is waiting: start its batch now rather than at the end of the turn, so
      // that the writers still on their way overlap their work with this batch's write.
      if (durable && this.#queuedBytes >= this.#eagerBytes && (this.#inFlight === 0 || this.#inFlightPipelinable)) {
        if (this.#pump()) this.#stats.eagerBatches++;
      }
      else this.#schedulePump();
    });
  }

  /** Makes every record appended so far durable (joins the group commit). */
  sync(): Promise<void> {
    try {
      this.#checkUsable();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.#syncTo(this.#lastLsn);
  }

  /** Records with lsn > fromLsn, up to the last one written when the iteration starts, read back from the device. */
  async *replay(fromLsn = 0): AsyncIterableIterator<WalRecord> {
    if (!Number.isSafeInteger(fromLsn) || fromLsn < 0) {
      throw new InvalidArgumentError(`fromLsn must be a non-negative integer, got ${String(fromLsn)}`);
    }
    if (this.#closePromise) throw new ClosedError('the write-ahead log is closed');
    const end = this.#writtenLsn;
    const reader = new AreaReader(this.#device, this.#startBlock + HEADER_BLOCKS, this.#areaBlocks, 64);
    for (let lsn = Math.max(fromLsn + 1, this.#headLsn); lsn <= end; lsn++) {
      if (lsn < this.#headLsn) lsn = this.#headLsn; // truncated while we iterated
      const pos = this.#positionOf(lsn);
      const headerBytes = (await ioStep('wal: replay read', () => reader.bytes(pos, RECORD_HEADER_SIZE))).slice();
      const h = decodeRecordHeader(headerBytes);
      if (h.lsn !== lsn || h.epoch !== this.#epoch || RECORD_HEADER_SIZE + h.length > this.#areaBytes) {
        throw new CorruptionError('wal', `record ${lsn} at area byte ${pos % this.#areaBytes} changed since it was written`);
      }
      const payload = (await ioStep('wal: replay read', () => reader.bytes(pos + RECORD_HEADER_SIZE, h.length))).slice();
      if (recordCrc(headerBytes, payload) !== h.crc) {
        throw new CorruptionError('wal', `record ${lsn} at area byte ${pos % this.#areaBytes} fails its checksum`);
      }
      yield { lsn, type: h.type, payload };
    }
  }

  /**
   * Frees the space of records <= upToLsn: writes and syncs the header with the new head, then lets waiting
   * appends use the space. Records not yet durable are synced first.
   */
  async truncate(upToLsn: number): Promise<void> {
    this.#checkUsable();
    if (!Number.isSafeInteger(upToLsn) || upToLsn < 0 || upToLsn > this.#lastLsn) {
      throw new InvalidArgumentError(`truncate(upToLsn) needs an LSN from 0 to ${this.#lastLsn}, got ${String(upToLsn)}`);
    }
    if (upToLsn > this.#durableLsn) await this.#syncTo(upToLsn);
    const previous = this.#truncating;
    let release!: () => void;
    this.#truncating = new Promise<void>((r) => (release = r));
    try {
      await previous;
      if (this.#poisoned) throw this.#poisoned;
      if (upToLsn < this.#headLsn) return;
      const newHeadLsn = upToLsn + 1;
      const header: WalHeader = {
        generation: this.#generation + 1,
        epoch: this.#epoch,
        headLsn: newHeadLsn,
        // The head record's position if its batch is formed; otherwise where the next batch will start.
        headPos: newHeadLsn <= this.#formedLsn() ? this.#positionOf(newHeadLsn) : this.#nextBatchPos,
        headPrevCrc: this.#crcOf(upToLsn),
        blockSize: this.#bs,
        areaBlocks: this.#areaBlocks,
      };
      const block = new Uint8Array(this.#bs);
      encodeHeader({ ...header, headPos: header.headPos % this.#areaBytes }, block);
      const headerBlock = this.#startBlock + (header.generation % HEADER_BLOCKS);
      try {
        if (this.#device.writeDurable) {
          await this.#device.writeDurable(headerBlock, block);
        } else {
          await this.#device.write(headerBlock, block);
          await this.#device.sync();
        }
        this.#stats.bytesWritten += block.byteLength;
        this.#stats.syncs++;
        // A copy (the next generation, same head) in the other slot, over the header of the log before this truncate:
        // if this header is damaged later, the fallback is the same head, not the old one, whose records the freed
        // space is about to be reused for (that fallback read as corruption in the middle of the log and failed the
        // open). Not synced on its own: until a later sync makes it durable, the slot holds the old header or a torn
        // copy, and this header (durable, newer) wins, as before.
        const copy = new Uint8Array(this.#bs);
        encodeHeader({ ...header, generation: header.generation + 1, headPos: header.headPos % this.#areaBytes }, copy);
        await this.#device.write(this.#startBlock + ((header.generation + 1) % HEADER_BLOCKS), copy);
        this.#stats.bytesWritten += copy.byteLength;
      } catch (err) {
        const typed = toIoError(err, 'wal: writing the header');
        this.#poison(typed);
        throw typed;
      }
      // Only now may batches reuse the freed blocks.
      this.#generation = header.generation + 1;
      this.#indexStart += newHeadLsn - this.#headLsn;
      this.#headLsn = newHeadLsn;
      this.#headPos = header.headPos;
      if (this.#indexStart > 1024 && this.#indexStart * 2 > this.#positions.length) {
        this.#positions = this.#positions.slice(this.#indexStart);
        this.#crcs = this.#crcs.slice(this.#indexStart);
        this.#indexStart = 0;
      }
      this.#schedulePump();
    } finally {
      release();
    }
  }

  /**
   * Waits for the batch in flight and for queued appends that fit, syncs what was written, and closes. Appends
   * still waiting for space reject with `ClosedError`. The device stays open (it is shared with the data).
   */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    await this.#truncating;
    for (;;) {
      if (this.#poisoned) break;
      if (this.#inFlight > 0) {
        await this.#currentBatch;
        continue;
      }
      if (this.#queue.length > 0) {
        this.#pump();
        if (this.#inFlight > 0) continue;
        const err = new ClosedError('the write-ahead log was closed while this append waited for space');
        for (const p of this.#queue.splice(0)) p.reject(err);
        this.#queuedBytes = 0;
        continue;
      }
      if (this.#writtenLsn > this.#durableLsn) {
        await this.#syncTo(this.#writtenLsn).catch(() => undefined); // a failure poisons and rejects its waiters
        continue;
      }
      break;
    }
    const err = new ClosedError('the write-ahead log was closed');
    for (const w of this.#syncWaiters.splice(0)) w.reject(err);
  }

  #checkUsable(): void {
    if (this.#closing) throw new ClosedError('the write-ahead log is closed');
    if (this.#poisoned) throw this.#poisoned;
  }

  #syncTo(target: number): Promise<void> {
    if (this.#poisoned) return Promise.reject(this.#poisoned);
    if (target <= this.#durableLsn) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#syncWaiters.push({ target, resolve, reject });
      this.#schedulePump();
    });
  }

  #usedBlocks(): number {
    return this.#nextBatchPos / this.#bs - Math.floor(this.#headPos / this.#bs);
  }

  #formedLsn(): number {
    return this.#headLsn + (this.#positions.length - this.#indexStart) - 1;
  }

  #positionOf(lsn: number): number {
    return this.#positions[this.#indexStart + (lsn - this.#headLsn)]!;
  }

  #crcOf(lsn: number): number {
    return this.#crcs[this.#indexStart + (lsn - this.#headLsn)]!;
  }

  /**
   * Starts the next batch in a microtask, so that every append of the current tick joins it. After a batch
   * completes, it waits one macrotask instead: the writers that batch just released run their next operation in
   * microtasks and join the next batch, rather than each waiting for a whole extra write + sync.
   */
  #schedulePump(afterBatch = false): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    const pump = (): void => {
      this.#pumpScheduled = false;
      this.#pump();
    };
    if (afterBatch) setImmediate(pump);
    else queueMicrotask(pump);
  }

  /**
   * Forms the next batch from the queue (as much as fits) and starts it. Up to MAX_IN_FLIGHT batches are in
   * flight, and more than one only when all of them need a sync, go out in one piece and the device has
   * `writeDurable`: each is then durable on its own when its write returns (disks serve several such writes at
   * once), and each settles after the one before it (`#runBatch` awaits the previous batch), so acknowledgements
   * stay in LSN order and `#durableLsn` only ever names a prefix of the log. Any other batch waits until nothing
   * is in flight. A crash with an earlier write torn and a later one complete loses both: the scan stops at the
   * torn record, and the later batch's records carry a `durableLsn` below it.
   */
  #pump(): boolean {
    if (this.#poisoned || this.#failedInFlight || this.#inFlight >= MAX_IN_FLIGHT || (this.#inFlight > 0 && !this.#inFlightPipelinable)) {
      return false;
    }
    const freeBlocks = this.#areaBlocks - this.#usedBlocks();
    let bytes = 0;
    let count = 0;
    let anyDurable = false;
    for (const p of this.#queue) {
      const next = bytes + RECORD_HEADER_SIZE + p.payload.byteLength;
      if (Math.ceil(next / this.#bs) > freeBlocks) break; // back-pressure: wait for truncate
      bytes = next;
      count++;
      anyDurable ||= p.durable;
    }
    const waitersNeedSync = this.#syncWaiters.length > 0;
    if (count === 0 && !(waitersNeedSync && this.#writtenLsn > this.#durableLsn)) return false;
    const needSync = waitersNeedSync || anyDurable;
    const pipelinable =
      count > 0 && needSync && this.#device.writeDurable !== undefined && !this.#wraps(this.#nextBatchPos, Math.ceil(bytes / this.#bs));
    // Not a batch that may overlap the one in flight: it waits; the pump runs again when that one settles.
    if (this.#inFlight > 0 && !pipelinable) return false;
    const inline = count === 1 && pipelinable && this.#inFlight === 0 && !this.#closing && this.#queue[0]!.inline && this.#inlineOk();
    if (inline && !this.#inlineTurn) {
      // Written on this thread, but only once the event loop has turned: a writer that awaits one store after
      // another would otherwise run entirely in microtasks, and timers and I/O callbacks would never run.
      this.#scheduleInline();
      return false;
    }
    const records = this.#queue.splice(0, count);
    this.#queuedBytes -= bytes;
    const buf = this.#formBatch(records, bytes);
    if (inline && this.#runInline(records, buf)) return true;
    if (this.#inFlight > 0) this.#stats.overlappedBatches++;
    this.#inFlight++;
    this.#inFlightPipelinable = pipelinable;
    this.#currentBatch = this.#runBatch(records, buf, needSync, this.#currentBatch);
    return true;
  }

  /** Whether `blocks` blocks written at virtual position `pos` would reach past the end of the area (two writes). */
  #wraps(pos: number, blocks: number): boolean {
    return (pos / this.#bs) % this.#areaBlocks + blocks > this.#areaBlocks;
  }

  /** Encodes `records` as one batch at #nextBatchPos and indexes them (synchronous: the chain is assigned here). */
  #formBatch(records: PendingAppend[], bytes: number): Uint8Array {
    const buf = new Uint8Array(Math.ceil(bytes / this.#bs) * this.#bs); // zeroed: the padding stays 0
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const start = this.#nextBatchPos;
    const last = records.length - 1;
    let off = 0;
    for (let i = 0; i <= last; i++) {
      const r = records[i]!;
      const length = r.payload.byteLength;
      writeRecordHeader(view, off, this.#lastCrc, r.lsn, this.#durableLsn, this.#epoch, length, r.type, i === last ? FLAG_END_OF_BATCH : 0);
      buf.set(r.payload, off + RECORD_HEADER_SIZE);
      // Header bytes 4..35 and the payload are contiguous here: one CRC call (same value as recordCrc).
      const crc = crc32(buf.subarray(off + 4, off + RECORD_HEADER_SIZE + length));
      view.setUint32(off, crc, true);
      this.#positions.push(start + off);
      this.#crcs.push(crc);
      this.#lastCrc = crc;
      off += RECORD_HEADER_SIZE + length;
    }
    this.#nextBatchPos = start + buf.byteLength;
    return buf;
  }

  /**
   * Writes the batch (awaiting every write), then syncs if needed; settles every waiter. Never rejects.
   * A batch that needs a sync and goes out in one piece uses `device.writeDurable` when the device has it (one
   * call instead of write + sync: with FileBlockDevice, one O_DSYNC write); a failure of it fails every record
   * of the batch, as a failed write does, and poisons the log.
   */
  async #runBatch(records: PendingAppend[], buf: Uint8Array, needSync: boolean, previous: Promise<void>): Promise<void> {
    try {
      let synced = false;
      if (buf.byteLength > 0) {
        const pos = this.#nextBatchPos - buf.byteLength;
        const durableBlock = needSync && this.#device.writeDurable ? this.#unsplitBlock(pos, buf) : -1;
        let failure: unknown;
        try {
          if (durableBlock >= 0) {
            const t0 = records.length === 1 ? performance.now() : 0;
            await this.#device.writeDurable!(durableBlock, buf);
            if (t0 !== 0) this.#noteLoneWrite(performance.now() - t0);
            synced = true;
          } else {
            await this.#writeArea(pos, buf);
          }
        } catch (err) {
          failure = err;
          // No batch may start beside this one any more: its failure is known, only not yet reported (that waits
          // for the batch before it).
          this.#failedInFlight = true;
        }
        // Settle in order: the batch before this one (still in flight when this one started) settles first. It
        // never rejects; if it failed, the log is poisoned and this batch is not acknowledged either.
        await previous;
        if (failure !== undefined) {
          this.#fail(toIoError(failure, durableBlock >= 0 ? 'wal: durable batch write failed' : 'wal: batch write failed'), records);
          return;
        }
        if (this.#poisoned) {
          for (const r of records) r.reject(this.#poisoned);
          return;
        }
        this.#noteWritten(records, buf);
        if (!synced) for (const r of records) if (!r.durable) r.resolve(r.lsn);
      }
      if (!needSync) return;
      const covered = this.#writtenLsn;
      if (!synced) {
        try {
          await this.#device.sync();
        } catch (err) {
          this.#fail(
            toIoError(err, 'wal: batch sync failed'),
            records.filter((r) => r.durable),
          );
          return;
        }
      }
      this.#settleDurable(records, covered, synced);
    } finally {
      this.#inFlight--;
      // A batch of one means a lone writer: its next append should not wait a macrotask for company.
      if (!this.#poisoned) this.#schedulePump(records.length > 1);
    }
  }

  /** Bookkeeping of a batch whose write returned: `#writtenLsn` and the stats. */
  #noteWritten(records: PendingAppend[], buf: Uint8Array): void {
    this.#writtenLsn = records[records.length - 1]!.lsn;
    this.#stats.records += records.length;
    this.#stats.batches++;
    if (records.length > this.#stats.maxBatch) this.#stats.maxBatch = records.length;
    this.#stats.bytesWritten += buf.byteLength;
  }

  /** Everything up to `covered` is durable: acknowledges the batch's records (all of them if its write was durable) and the sync waiters it covers. */
  #settleDurable(records: PendingAppend[], covered: number, synced: boolean): void {
    this.#stats.syncs++;
    this.#durableLsn = covered;
    if (synced) for (const r of records) r.resolve(r.lsn);
    else for (const r of records) if (r.durable) r.resolve(r.lsn);
    const still: SyncWaiter[] = [];
    for (const w of this.#syncWaiters) {
      if (w.target <= covered) w.resolve();
      else still.push(w);
    }
    this.#syncWaiters = still;
  }

  /** Runs the pump in the next check phase with inline batches allowed (see `#pump`). */
  #scheduleInline(): void {
    if (this.#inlineScheduled) return;
    this.#inlineScheduled = true;
    setImmediate(() => {
      this.#inlineScheduled = false;
      this.#inlineTurn = true;
      try {
        this.#pump();
      } finally {
        this.#inlineTurn = false;
      }
    });
  }

  /** Whether a lone durable batch may be written on the calling thread now (see INLINE_MAX_MICROS). */
  #inlineOk(): boolean {
    return this.#device.writeDurableSync !== undefined && this.#loneWriteMicros < INLINE_MAX_MICROS;
  }

  /** Folds the duration of a lone durable batch's write into the moving average `#inlineOk` reads. */
  #noteLoneWrite(ms: number): void {
    this.#loneWriteMicros += (ms * 1000 - this.#loneWriteMicros) / 4;
  }

  /**
   * Writes a formed batch of one record with the device's `writeDurableSync`, on this thread, and settles it.
   * Nothing else is in flight, so the order of acknowledgements is kept. False (nothing written) if the device
   * declines; the caller then starts the batch as usual. A failure fails the record and poisons the log, as a failed
   * durable write does in `#runBatch`.
   */
  #runInline(records: PendingAppend[], buf: Uint8Array): boolean {
    const block = this.#unsplitBlock(this.#nextBatchPos - buf.byteLength, buf);
    const t0 = performance.now();
    let wrote: boolean;
    try {
      wrote = this.#device.writeDurableSync!(block, buf);
    } catch (err) {
      this.#fail(toIoError(err, 'wal: durable batch write failed'), records);
      return true;
    }
    // Only a literal true means done: a device that returned anything else (a promise, by mistake) has not made the
    // batch durable yet, and the usual path writes it again and waits.
    if (wrote !== true) return false;
    this.#noteLoneWrite(performance.now() - t0);
    this.#stats.inlineBatches++;
    this.#noteWritten(records, buf);
    this.#settleDurable(records, this.#writtenLsn, true);
    if (this.#queue.length > 0 || this.#syncWaiters.length > 0) this.#schedulePump();
    return true;
  }

  /** The device block where a batch at virtual position `pos` starts, or -1 if it wraps (two writes). */
  #unsplitBlock(pos: number, buf: Uint8Array): number {
    const areaBlock = (pos / this.#bs) % this.#areaBlocks;
    if (areaBlock + buf.byteLength / this.#bs > this.#areaBlocks) return -1;
    return this.#startBlock + HEADER_BLOCKS + areaBlock;
  }

  /** Writes whole blocks at a virtual block-aligned position: one write, or two if it wraps. Awaits both. */
  async #writeArea(pos: number, buf: Uint8Array): Promise<void> {
    const first = this.#startBlock + HEADER_BLOCKS;
    const areaBlock = (pos / this.#bs) % this.#areaBlocks;
    const blocks = buf.byteLength / this.#bs;
    const headBlocks = Math.min(blocks, this.#areaBlocks - areaBlock);
    if (headBlocks === blocks) {
      await this.#device.write(first + areaBlock, buf);
      return;
    }
    const split = headBlocks * this.#bs;
    const results = await Promise.allSettled([
      this.#device.write(first + areaBlock, buf.subarray(0, split)),
      this.#device.write(first, buf.subarray(split)),
    ]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /** A batch failed: its waiters get the typed error, the log is poisoned. */
  #fail(typed: VdeError, batchWaiters: PendingAppend[]): void {
    for (const r of batchWaiters) r.reject(typed);
    for (const w of this.#syncWaiters.splice(0)) w.reject(typed);
    this.#poison(typed);
  }

  /** From now on every operation rejects with PoisonedError; queued appends reject with it too. */
  #poison(cause: VdeError): void {
    this.#poisoned ??= new PoisonedError(
      'the write-ahead log failed a write or sync earlier and may have lost data; close and reopen it to recover',
      { cause },
    );
    for (const p of this.#queue.splice(0)) p.reject(this.#poisoned);
    this.#queuedBytes = 0;
    for (const w of this.#syncWaiters.splice(0)) w.reject(this.#poisoned);
  }
}

/** Bytes of one copy slab (see copyOf); payloads above a sixteenth of it get a buffer of their own. */
const COPY_SLAB_BYTES = 256 * 1024;
let copySlab: Uint8Array = new Uint8Array(0);
let copySlabUsed = 0;

/**
 * The log's private copy of a payload (the caller may reuse its buffer once `append` returns). Small copies are
 * views of a shared, never rewritten 256 KiB slab (bump-allocated; a full slab is left to the garbage collector once
 * no copy in it is referenced), instead of Node's 8 KiB Buffer pool, which needed a new ArrayBuffer every few
 * 1 KiB records. Internal only: it is read by `#formBatch`.
 */
function copyOf(bytes: Uint8Array): Uint8Array {
  const n = bytes.byteLength;
  if (n > COPY_SLAB_BYTES / 16) {
    const own = Buffer.allocUnsafeSlow(n);
    own.set(bytes);
    return own;
  }
  if (copySlabUsed + n > copySlab.byteLength) {
    copySlab = Buffer.allocUnsafeSlow(COPY_SLAB_BYTES);
    copySlabUsed = 0;
  }
  const copy = copySlab.subarray(copySlabUsed, copySlabUsed + n);
  copy.set(bytes);
  copySlabUsed += (n + 7) & ~7;
  return copy;
}

function checkRegion(device: BlockDevice, region: WalRegion): void {
  if (device === null || typeof device !== 'object' || typeof device.read !== 'function') {
    throw new InvalidArgumentError('device must be a BlockDevice');
  }
  const startBlock = (region as Partial<WalRegion> | undefined)?.startBlock ?? -1;
  const blockCount = (region as Partial<WalRegion> | undefined)?.blockCount ?? -1;
  if (!Number.isSafeInteger(startBlock) || startBlock < 0 || !Number.isSafeInteger(blockCount) || blockCount < MIN_REGION_BLOCKS) {
    throw new InvalidArgumentError(
      `a WAL region needs an integer startBlock >= 0 and blockCount >= ${MIN_REGION_BLOCKS}, got ${JSON.stringify(region)}`,
    );
  }
  if (startBlock + blockCount > device.blockCount) {
    throw new OutOfRangeError(
      `WAL region ${startBlock}..${startBlock + blockCount - 1} is past the end of the device (${device.blockCount} blocks)`,
    );
  }
}

/** Runs a device step, turning a Node error into a typed one (VdeErrors pass through). */
async function ioStep<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw toIoError(err, what);
  }
}
