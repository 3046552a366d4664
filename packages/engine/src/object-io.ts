import type { Extent } from '@vde/allocator';
import { AbortedError, type BlockDevice, CorruptionError, InvalidArgumentError, OutOfRangeError, SourceError, TooLargeError, VdeError, crc32 } from '@vde/block-device';
import { constants } from 'node:buffer';
import { onAbort } from './abort-watch.js';
import { copyOut } from './bytes.js';
import type { ReadSlots } from './read-slots.js';
import {
  type DataArea,
  type ObjectRecord,
  KIND_INDIRECT,
  decodeIndirect,
  decodeRecord,
  recordKind,
} from './record.js';

/** What `store` accepts as data. */
/**
 * What `store()` takes: bytes (any typed array or `DataView`, or an `ArrayBuffer`), a string (stored as UTF-8), or
 * a stream of such chunks (an async iterable, a Node `Readable`, a web `ReadableStream`).
 */
export type ObjectData =
  | ArrayBufferView
  | ArrayBuffer
  | string
  | AsyncIterable<ArrayBufferView | ArrayBuffer | string>
  | ReadableStream<ArrayBufferView | ArrayBuffer | string>;

/** The bytes of a new object version, written and described. */
export interface WrittenObject {
  size: number;
  crc: number;
  inline?: Uint8Array;
  extents?: Extent[];
}

export interface ObjectIoHost {
  readonly device: BlockDevice;
  /** Device reads in flight, shared with the index's page reads (see ReadSlots). */
  readonly reads: ReadSlots;
  /**
   * Allocates `blocks` blocks (growing the container if needed); may return several extents. With `track`, the
   * extents are also pushed onto it in the same synchronous step as the allocation (see ObjectIo.write).
   */
  allocateData(blocks: number, contiguous: boolean, track?: Extent[]): Promise<Extent[]>;
  /**
   * Frees blocks that were never referenced by anything durable (a failed or aborted store); with `track`, empties
   * it in the same synchronous step.
   */
  freeUnreferenced(extents: readonly Extent[], track?: Extent[]): void;
  /** Where object blocks may lie: past the superblocks and the log, within the container as it is now. */
  dataArea(): DataArea;
  readonly verifyChecksums: boolean;
  readonly maxObjectBytes: number;
  noteCorruption(): void;
}

const encoder = new TextEncoder();
/** Streams are staged and written in runs of this many bytes (rounded to blocks). */
const STREAM_CHUNK_BYTES = 1 << 20;

function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === 'object' && typeof (x as Record<symbol, unknown>)[Symbol.asyncIterator] === 'function';
}

/** Turns any accepted data into bytes (when it is in memory) or an async iterable of chunks. */
export function normalizeData(data: unknown): Uint8Array | AsyncIterable<unknown> {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (isAsyncIterable(data)) {
    // A locked web stream cannot be read (another reader has it): its iterator threw a raw TypeError.
    if (data instanceof ReadableStream && data.locked) {
      throw new InvalidArgumentError('data is a ReadableStream that is locked (another reader holds it)');
    }
    return data;
  }
  throw new InvalidArgumentError(
    'data must be a Uint8Array, string, ArrayBuffer, AsyncIterable<Uint8Array>, Readable or ReadableStream',
  );
}

function chunkBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return encoder.encode(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk); // as store() takes one whole
  throw new InvalidArgumentError('a data stream yielded something that is not a Uint8Array, ArrayBuffer or string');
}

/**
 * Turns a stream's chunks into bytes, its string chunks encoded as one text: a surrogate pair split across two
 * chunks (`s.slice(i, i + n)` cuts an emoji in two) is one character, not two U+FFFD. A high surrogate at the end of
 * a string chunk waits for the next chunk; if that is not a string starting with the low half, or the stream ends,
 * it is encoded alone (U+FFFD, as TextEncoder encodes a lone surrogate).
 */
class ChunkText {
  #high = '';

  bytes(chunk: unknown): Uint8Array {
    if (typeof chunk === 'string') {
      let text = this.#high === '' ? chunk : this.#high + chunk;
      this.#high = '';
      const last = text.charCodeAt(text.length - 1);
      if (last >= 0xd800 && last <= 0xdbff) {
        this.#high = text.slice(-1);
        text = text.slice(0, -1);
      }
      return encoder.encode(text);
    }
    const bytes = chunkBytes(chunk);
    if (this.#high === '') return bytes;
    const held = this.end();
    const out = new Uint8Array(held.byteLength + bytes.byteLength);
    out.set(held);
    out.set(bytes, held.byteLength);
    return out;
  }

  /** What is held back at the end of the stream (a lone high surrogate), encoded. */
  end(): Uint8Array {
    const held = this.#high;
    this.#high = '';
    return encoder.encode(held);
  }
}

/** A small in-memory object kept inline in its index entry (copied: the caller may reuse its buffer). */
export function inlineObject(data: Uint8Array): WrittenObject {
  return { size: data.byteLength, crc: crc32(data), inline: data.slice() };
}

/** Appends `next` to `list`, merging it into the last extent when they touch. */
export function pushExtent(list: Extent[], next: Extent): void {
  const last = list[list.length - 1];
  if (last && last.start + last.count === next.start) list[list.length - 1] = { start: last.start, count: last.count + next.count };
  else list.push(next);
}

/** Objects of at least this size are checksummed while their writes are in flight. */
const LATE_CHECKSUM_BYTES = 256 * 1024;
/** A whole-object read at least this large verifies its checksum through the ChecksumQueue (a slice per turn). */
const SLICED_READ_CHECKSUM_BYTES = 4 * 1024 * 1024;
/** Its slices: about 1 ms each here (the reader waits for the whole object anyway; smaller slices cost it turns). */
const READ_CHECKSUM_SLICE_BYTES = 4 * 1024 * 1024;
/** Bytes of a late checksum computed per event-loop turn (about 75 µs here). */
export const CHECKSUM_SLICE_BYTES = 256 * 1024;

/**
 * Late checksums, computed CHECKSUM_SLICE_BYTES per event-loop turn, first come first served. The data writes
 * this engine has queued are started by the completions of the ones in flight, which run on this thread: when 64
 * concurrent 1 MiB stores computed their 64 checksums in the turn that queued their writes (20 ms), the thread
 * pool finished its first writes and then sat idle until they were done. Between two slices the event loop
 * handles those completions, so the pool stays busy while the checksums are computed.
 * @internal Exported for tests, not from the package entry.
 */
export class ChecksumQueue {
  readonly #jobs: {
    data: Uint8Array;
    offset: number;
    crc: number;
    slice: number;
    /** An abort drops the job at its next slice (AbortedError): the store it was for will not use it. */
    signal: AbortSignal | undefined;
    resolve: (crc: number) => void;
    reject: (err: unknown) => void;
  }[] = [];
  #scheduled = false;

  /** The CRC-32 of `data` (which must not change until it resolves), `slice` bytes per turn. */
  crc(data: Uint8Array, slice = CHECKSUM_SLICE_BYTES, signal?: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#jobs.push({ data, offset: 0, crc: 0, slice, signal, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#slice);
      }
    });
  }

  readonly #slice = (): void => {
    const job = this.#jobs[0]!;
    if (job.signal?.aborted) {
      this.#jobs.shift();
      job.reject(new AbortedError(undefined, { cause: job.signal.reason }));
      if (this.#jobs.length > 0) setImmediate(this.#slice);
      else this.#scheduled = false;
      return;
    }
    const end = Math.min(job.data.byteLength, job.offset + job.slice);
    job.crc = crc32(job.data.subarray(job.offset, end), job.crc);
    job.offset = end;
    if (end === job.data.byteLength) {
      this.#jobs.shift();
      job.resolve(job.crc);
    }
    if (this.#jobs.length > 0) setImmediate(this.#slice);
    else this.#scheduled = false;
  };
}
/**
 * Data writes one engine keeps in libuv's thread pool at once: one thread fewer than the pool has (4 unless
 * UV_THREADPOOL_SIZE says otherwise), so that the log's write never queues behind a backlog of data writes (the
 * pool is first in, first out). 64 writers of 1-64 KiB objects, two A/Bs of 10 alternating runs in one process:
 * median 4,466 vs 3,959 and 4,179 vs 3,822 stores/s with 3 (2: 1.01×, 4: 1.09×, 8: 0.96×, unlimited before).
 */
/**
 * The largest single data write: a large object's run is written in pieces of this size, so that an abort stops
 * the ones not yet started (a 768 MiB object was one write that no abort could stop).
 */
const DATA_WRITE_PIECE_BYTES = 8 << 20;

const DATA_WRITES_IN_FLIGHT = Math.max(1, (Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10) || 4) - 1);

export class ObjectIo {
  readonly blockSize: number;
  /** Free data-write slots (#limitedWrite), and the writes waiting for one, first come first served. */
  #slots = DATA_WRITES_IN_FLIGHT;
  readonly #checksums = new ChecksumQueue();
  readonly #slotWaiters: ((() => void) | undefined)[] = [];
  /**
   * The first waiter still queued: a queue with a head index, not `shift()`, which moves the whole array. A large
   * object in fragmented free space queues one write per extent (135,000 of them took 33 s to store 66 MiB, nearly
   * all in `shift()`).
   */
  #slotHead = 0;
  constructor(private readonly host: ObjectIoHost) {
    this.blockSize = host.device.blockSize;
  }

  /**
   * Writes the bytes of a new object version: inline (returned, not written) when `size <= inlineLimit`, else into
   * freshly allocated extents. On any failure the extents it allocated are freed before the error propagates.
   * `track` (streams only): a list the host watches; every block allocated for this object is on it from the moment
   * it is allocated until it is freed on failure (then the list is emptied at the same moment), so the host always
   * knows which blocks a store still writing holds.
   */
  async write(source: Uint8Array | AsyncIterable<unknown>, inlineLimit: number, signal?: AbortSignal, track?: Extent[]): Promise<WrittenObject> {
    if (source instanceof Uint8Array) return this.#writeBytes(source, inlineLimit, signal, track);
    return this.#writeStream(source, inlineLimit, signal, track);
  }

  async #writeBytes(data: Uint8Array, inlineLimit: number, signal: AbortSignal | undefined, track?: Extent[]): Promise<WrittenObject> {
    const size = data.byteLength;
    if (size > this.host.maxObjectBytes) throw new TooLargeError(`object of ${size} bytes is larger than the container may grow`);
    if (size <= inlineLimit || size === 0) return inlineObject(data); // an empty object has no blocks to write
    // A large object's checksum is computed while the thread pool copies its bytes: 64 concurrent 1 MiB stores
    // otherwise spend about 20 ms checksumming before the first write goes out; and in slices, a turn each
    // (ChecksumQueue), so that the writes queued behind the first ones keep starting. A smaller one is checksummed
    // first: measured both ways, that order was 8-10% faster on 64 writers of 1-64 KiB.
    const early = size < LATE_CHECKSUM_BYTES ? crc32(data) : undefined;
    const blocks = Math.ceil(size / this.blockSize);
    const extents = await this.host.allocateData(blocks, false, track);
    let crc: number;
    // An abort stops the writes not yet started and the checksum at its next slice: a 768 MiB store went on writing
    // for 1-8 s after its abort. Its blocks are freed once the writes in flight have settled.
    const writing = this.#writeExtents(extents, data, signal);
    // Awaited below; until then a failure must not count as unhandled (the checksum may take several turns).
    writing.catch(() => undefined);
    try {
      crc = early ?? (await this.#checksums.crc(data, CHECKSUM_SLICE_BYTES, signal));
      await writing;
    } catch (err) {
      await writing.catch(() => undefined);
      this.host.freeUnreferenced(extents, track);
      throw err;
    }
    return { size, crc, extents };
  }

  /**
   * `device.write`, with at most DATA_WRITES_IN_FLIGHT of them in flight (first come, first served). A write whose
   * `signal` has fired by the time it gets its slot is not started (AbortedError).
   */
  async #limitedWrite(blockNo: number, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.#slots > 0) this.#slots--;
    else await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    try {
      throwIfAborted(signal);
      await this.host.device.write(blockNo, bytes);
    } finally {
      const next = this.#slotWaiters[this.#slotHead];
      if (next) {
        this.#slotWaiters[this.#slotHead++] = undefined;
        if (this.#slotHead === this.#slotWaiters.length) {
          this.#slotWaiters.length = 0;
          this.#slotHead = 0;
        }
        next();
      } else {
        this.#slots++;
      }
    }
  }

  /**
   * Writes `data` (padded to whole blocks) across `extents`, the writes in flight together (within the limit), in
   * pieces of at most DATA_WRITE_PIECE_BYTES so that an abort (`signal`) stops the pieces not yet started.
   */
  async #writeExtents(extents: readonly Extent[], data: Uint8Array, signal?: AbortSignal): Promise<void> {
    const bs = this.blockSize;
    const piece = Math.max(bs, Math.floor(DATA_WRITE_PIECE_BYTES / bs) * bs);
    const writes: Promise<void>[] = [];
    let offset = 0;
    for (const e of extents) {
      const bytes = e.count * bs;
      const end = Math.min(offset + bytes, data.byteLength);
      const whole = Math.floor((end - offset) / bs) * bs;
      for (let at = 0; at < whole; at += piece) {
        const n = Math.min(piece, whole - at);
        writes.push(this.#limitedWrite(e.start + at / bs, data.subarray(offset + at, offset + at + n), signal));
      }
      if (end - offset > whole) {
        const tail = new Uint8Array(bs);
        tail.set(data.subarray(offset + whole, end));
        writes.push(this.#limitedWrite(e.start + whole / bs, tail, signal));
      }
      offset += bytes;
    }
    await settleAll(writes);
  }

  async #writeStream(source: AsyncIterable<unknown>, inlineLimit: number, signal?: AbortSignal, track?: Extent[]): Promise<WrittenObject> {
    const bs = this.blockSize;
    const chunkCap = Math.max(bs, Math.floor(STREAM_CHUNK_BYTES / bs) * bs);
    let staging = new Uint8Array(chunkCap);
    let staged = 0;
    let size = 0;
    let crc = 0;
    const extents: Extent[] = [];
    let inFlight: Promise<void> | undefined;
    const flush = async (bytes: Uint8Array): Promise<void> => {
      const blocks = Math.ceil(bytes.byteLength / bs);
      const got = await this.host.allocateData(blocks, false, track);
      for (const e of got) pushExtent(extents, e);
      if (inFlight) await inFlight;
      inFlight = this.#writeExtents(got, bytes);
      // Awaited at the next flush or at the end; until then the loop may be waiting for the source's next chunk,
      // and a write failing meanwhile must not count as unhandled (it ended the process).
      inFlight.catch(() => undefined);
    };
    let it: AsyncIterator<unknown>;
    try {
      it = source[Symbol.asyncIterator]();
    } catch (err) {
      throw sourceError(err);
    }
    const abort = signal ? abortRace(signal) : undefined;
    const text = new ChunkText();
    let finished = false;
    try {
      for (;;) {
        throwIfAborted(signal);
        const step = await nextChunk(it, abort?.promise);
        let chunk: Uint8Array;
        if (step.done) {
          finished = true;
          chunk = text.end();
          if (chunk.byteLength === 0) break;
        } else {
          chunk = text.bytes(step.value);
          // Nothing to add, and Node's zlib.crc32 returns 0, not the running value, for an empty view whose buffer
          // has no memory ('' encoded, new Uint8Array(new ArrayBuffer(0))): the object read as ERR_VDE_CORRUPT.
          if (chunk.byteLength === 0) continue;
        }
        size += chunk.byteLength;
        if (size > this.host.maxObjectBytes) throw new TooLargeError(`object is larger than the container may grow`);
        crc = crc32(chunk, crc);
        while (chunk.byteLength > 0) {
          const n = Math.min(chunk.byteLength, chunkCap - staged);
          staging.set(chunk.subarray(0, n), staged);
          staged += n;
          chunk = chunk.subarray(n);
          if (staged === chunkCap) {
            await flush(staging);
            staging = new Uint8Array(chunkCap);
            staged = 0;
          }
        }
        if (finished) break;
      }
      throwIfAborted(signal);
      if (extents.length === 0 && (size <= inlineLimit || size === 0)) return { size, crc, inline: staging.slice(0, staged) };
      if (staged > 0) await flush(staging.subarray(0, Math.ceil(staged / bs) * bs));
      if (inFlight) await inFlight;
      return { size, crc, extents };
    } catch (err) {
      // Stop the source without waiting for it: a stalled one may never answer. An iterator's return() waits for
      // a pending next(), so a Node stream is destroyed directly (as a for-await loop leaving it would).
      if (!finished) {
        closeQuietly(it);
        const destroy = (source as { destroy?: unknown }).destroy;
        if (typeof destroy === 'function') (destroy as () => void).call(source);
      }
      if (inFlight) await inFlight.catch(() => undefined);
      this.host.freeUnreferenced(extents, track);
      throw err;
    } finally {
      abort?.dispose();
    }
  }

  /**
   * Resolves an index value into its record. Direct records (kinds 1 and 2, nearly all of them) decode
   * synchronously; only an indirect pointer returns a promise (it reads the record's blocks).
   */
  recordOf(value: Uint8Array, what: string): ObjectRecord | Promise<ObjectRecord> {
    if (value[0] === KIND_INDIRECT) return this.loadRecord(value, what);
    try {
      return decodeRecord(value, what, this.host.dataArea());
    } catch (err) {
      throw this.#corruptionOf(err, what);
    }
  }

  /** Resolves an index value (a kind 1/2 record or an indirect pointer) into the record. */
  async loadRecord(value: Uint8Array, what: string): Promise<ObjectRecord> {
    const dev = this.host.device;
    try {
      const area = this.host.dataArea();
      if (recordKind(value, what) !== KIND_INDIRECT) return decodeRecord(value, what, area);
      const p = decodeIndirect(value, what, area);
      const bytes = (await this.host.reads.run(() => dev.read(p.start, p.blocks))).subarray(0, p.length);
      if (crc32(bytes) !== p.crc) throw new CorruptionError(what, 'indirect record checksum mismatch');
      return decodeRecord(bytes, what, area);
    } catch (err) {
      throw this.#corruptionOf(err, what);
    }
  }

  /** An inline object's bytes (a copy), checksum verified. Synchronous: no block is read. */
  readInline(rec: ObjectRecord & { inline: Uint8Array }, what: string): Uint8Array {
    this.#verify(rec, crc32(rec.inline), what);
    return copyOut(rec.inline);
  }

  /** Reads a whole object and verifies its checksum. */
  async read(rec: ObjectRecord, what: string): Promise<Uint8Array> {
    if (rec.inline) return this.readInline(rec as ObjectRecord & { inline: Uint8Array }, what);
    const extents = rec.extents ?? [];
    const bs = this.blockSize;
    let blocks = 0;
    for (const e of extents) blocks += e.count;
    if (blocks * bs > constants.MAX_LENGTH) {
      throw new TooLargeError(`${what} is ${rec.size} bytes, more than one buffer holds; read it with createReadStream`);
    }
    // Not zero-filled: the reads below fill every byte (readInto reads whole blocks or throws, and then `buf` is
    // dropped). Zeroing 1 MiB first was 14% of a warm read loop's CPU over 1 MiB objects.
    const buf = new Uint8Array(Buffer.allocUnsafeSlow(blocks * bs).buffer, 0, blocks * bs);
    const reads: Promise<void>[] = [];
    let offset = 0;
    const dev = this.host.device;
    for (const e of extents) {
      const into = buf.subarray(offset, offset + e.count * bs);
      reads.push(this.host.reads.run(() => dev.readInto(e.start, into)));
      offset += e.count * bs;
    }
    try {
      await settleAll(reads);
    } catch (err) {
      throw this.#corruptionOf(err, what);
    }
    const out = buf.subarray(0, rec.size);
    if (this.host.verifyChecksums) {
      // A large object is checksummed a slice per turn: 768 MiB in one call held the event loop for 80-90 ms.
      this.#verify(rec, out.byteLength < SLICED_READ_CHECKSUM_BYTES ? crc32(out) : await this.#checksums.crc(out, READ_CHECKSUM_SLICE_BYTES), what);
    }
    return out;
  }

  /**
   * Yields the object's bytes in chunks of about 1 MiB; the checksum is checked when the last chunk is read (unless
   * the engine's `verifyChecksums` is off and `verify` is not passed: scrub passes true).
   */
  async *chunks(rec: ObjectRecord, what: string, verify = this.host.verifyChecksums): AsyncGenerator<Uint8Array> {
    if (rec.inline) {
      this.#verify(rec, crc32(rec.inline), what);
      if (rec.inline.byteLength > 0) yield rec.inline.slice();
      return;
    }
    const bs = this.blockSize;
    const perRead = Math.max(1, Math.floor(STREAM_CHUNK_BYTES / bs));
    let remaining = rec.size;
    let crc = 0;
    for (const e of rec.extents ?? []) {
      for (let b = 0; b < e.count && remaining > 0; b += perRead) {
        const n = Math.min(perRead, e.count - b);
        let chunk: Uint8Array;
        try {
          const at = e.start + b;
          chunk = await this.host.reads.run(() => this.host.device.read(at, n));
        } catch (err) {
          throw this.#corruptionOf(err, what);
        }
        if (chunk.byteLength > remaining) chunk = chunk.subarray(0, remaining);
        remaining -= chunk.byteLength;
        crc = crc32(chunk, crc);
        if (remaining === 0 && verify) this.#verify(rec, crc, what);
        yield chunk;
      }
    }
  }

  #verify(rec: ObjectRecord, crc: number, what: string): void {
    if (crc !== rec.crc) {
      this.host.noteCorruption();
      throw new CorruptionError(what, 'object checksum mismatch');
    }
  }

  #corruptionOf(err: unknown, what: string): unknown {
    if (err instanceof OutOfRangeError) {
      this.host.noteCorruption();
      return new CorruptionError(what, `points outside the container (${err.message})`);
    }
    if (err instanceof CorruptionError) this.host.noteCorruption();
    return err;
  }
}

/** Awaits every promise (so no write is left in flight), then throws the first failure. */
export async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(undefined, { cause: signal.reason });
}

/** A promise that rejects with `AbortedError` when `signal` fires (never resolves); `dispose` drops the listener. */
function abortRace(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let dispose = (): void => undefined;
  const promise = new Promise<never>((_, reject) => {
    const abort = (): void => reject(new AbortedError(undefined, { cause: signal.reason }));
    if (signal.aborted) abort();
    else dispose = onAbort(signal, abort);
  });
  promise.catch(() => undefined); // observed by the race; unobserved when the store ends first
  return { promise, dispose: () => dispose() };
}

/**
 * The source's next chunk. With `aborted` (see abortRace), an abort wins over a source that has stalled: a store
 * is never held by a source that stopped producing. What the source throws becomes a `SourceError` (a typed error
 * with the source's error as `cause`); a `VdeError` it throws (say, another engine's read stream) stays as it is.
 */
async function nextChunk(it: AsyncIterator<unknown>, aborted: Promise<never> | undefined): Promise<IteratorResult<unknown>> {
  let next: Promise<IteratorResult<unknown>>;
  try {
    next = Promise.resolve(it.next());
  } catch (err) {
    throw sourceError(err);
  }
  if (aborted) next.catch(() => undefined); // a source that fails after the abort won has nobody to report to
  try {
    return await (aborted ? Promise.race([next, aborted]) : next);
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    throw sourceError(err);
  }
}

function sourceError(err: unknown): VdeError {
  if (err instanceof VdeError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new SourceError(`the data source failed while it was read: ${detail}`, { cause: err });
}

/** Asks an iterator to stop (a Readable's destroys the stream), without waiting for it or caring how it ends. */
function closeQuietly(it: AsyncIterator<unknown>): void {
  try {
    const r = it.return?.();
    if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(undefined, () => undefined);
  } catch {
    // the source is broken anyway; the store's own error is what the caller gets
  }
}
