import {
  CorruptionError,
  crc32,
  FormatError,
  FullError,
  InvalidArgumentError,
  OutOfRangeError,
  TooLargeError,
} from '@vde/block-device';
import { clearRange, countOnes, findOne, findOneBackward, findZero, setRange } from './bits.js';

/** Blocks `[start, start + count)`. */
export interface Extent {
  readonly start: number;
  readonly count: number;
}

/** The most separate (merged) reserved ranges an allocator holds; the image has this many fixed slots. */
export const MAX_RESERVED_RANGES = 64;
/** The largest device the allocator handles (16 TiB of 4 KiB blocks; a 512 MiB bitmap). */
export const MAX_BLOCK_COUNT = 2 ** 32;

/** How many runs that fit a contiguous request the best-fit search looks at before it takes the smallest. */
const BEST_FIT_CANDIDATES = 16;
/**
 * When no single run fits, the multi-extent search keeps the largest runs it has seen and stops once they hold
 * enough blocks and it has looked at this many blocks past the cursor (a bounded search: on small maps it sees
 * everything, on large fragmented ones it trades a few more extents for speed).
 */
const GATHER_WINDOW_BLOCKS = 65_536;
/** How far a free looks for the ends of the free run it joins (see `#afterRelease`). */
const MERGE_SCAN_BLOCKS = 4096;
/**
 * The bitmap is summarized in chunks of this many blocks (a multiple of 32): per chunk, a bound on its longest
 * free stretch, so that a contiguous search skips chunks whose holes are all too small (see `#chunkLongest`).
 */
const CHUNK_BLOCKS = 2048;

/*
 * Serialized image, format version 1 (all integers little-endian; W = ceil(blockCount / 32)):
 *   0   u8[8]  magic "VDEALLOC"
 *   8   u32    version = 1
 *   12  u32    flags = 0
 *   16  u64    blockCount (<= 2^32)
 *   24  u64    freeCount = number of 0 bits in the bitmap
 *   32  u32    reservedRangeCount (<= 64)
 *   36  u32    0
 *   40  u32[W] bitmap: 1 = used (allocated or reserved); bits past blockCount are 1
 *   40+4W      64 slots of { start u64, count u64 }: the first reservedRangeCount are the sorted, merged
 *              reserved ranges (their bits are 1); the rest are zero
 *   1064+4W u32 crc32 of every byte before it
 * Staged frees are not persisted. See README.md.
 */
const MAGIC = new TextEncoder().encode('VDEALLOC');
const VERSION = 1;
const HEADER_BYTES = 40;
const RANGE_SLOT_BYTES = 16;
const RANGES_BYTES = MAX_RESERVED_RANGES * RANGE_SLOT_BYTES;
const CRC_BYTES = 4;
const WHAT = 'allocator bitmap';
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

interface MutableExtent {
  start: number;
  count: number;
}

interface StagedFree {
  readonly tag: number;
  readonly extents: readonly Extent[];
}

function wordCount(blockCount: number): number {
  return Math.ceil(blockCount / 32);
}

function chunkCount(blockCount: number): number {
  return Math.ceil(blockCount / CHUNK_BLOCKS);
}

function checkBlockCount(blockCount: number, what: string): void {
  if (!Number.isSafeInteger(blockCount) || blockCount < 0 || blockCount > MAX_BLOCK_COUNT) {
    throw new InvalidArgumentError(`${what} must be an integer from 0 to ${MAX_BLOCK_COUNT}, got ${String(blockCount)}`);
  }
}

function describe(e: Extent): string {
  return `{ start: ${String(e.start)}, count: ${String(e.count)} }`;
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 2 ** 32, true);
  view.setUint32(offset + 4, Math.floor(value / 2 ** 32), true);
}

function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset + 4, true) * 2 ** 32 + view.getUint32(offset, true);
}

/** Length of the longest run of 0 bits in `[from, end)` (runs clipped to that range). */
function longestZeroRun(words: Uint32Array, from: number, end: number): number {
  let longest = 0;
  for (let i = findZero(words, from, end); i < end; ) {
    const stop = findOne(words, i, end);
    if (stop - i > longest) longest = stop - i;
    i = findZero(words, stop, end);
  }
  return longest;
}

/**
 * A free-space bitmap: one bit per block, 1 = used (allocated, reserved or staged), 0 = free.
 *
 * Invariants (checked by `check()`):
 * - `#free` equals the number of 0 bits in `[0, blockCount)`; bits from `blockCount` to the end of the last
 *   word are 1 (so scans never return them).
 * - every reserved range is used, inside the device, sorted and merged, and at most `MAX_RESERVED_RANGES`.
 * - every staged block is used, not reserved and staged once; `#stagedCount` is their number.
 * - `#largestBound` is >= the longest free run, and equal to it when `#largestExact`.
 * - for every chunk `c` (blocks `[c * CHUNK_BLOCKS, min((c + 1) * CHUNK_BLOCKS, blockCount))`),
 *   `#chunkLongest[c]` is >= the longest stretch of free blocks inside the chunk (runs clipped to the chunk),
 *   and equal to it unless `#chunkStale[c]`; entries past the last chunk are 0 and not stale.
 * All methods are synchronous: each call is atomic with respect to other JavaScript on this thread.
 */
export class BitmapAllocator {
  #blockCount: number;
  /** Capacity may exceed the words in use (amortized growth). */
  #words: Uint32Array;
  /** Staged-for-free bits, allocated on first use. */
  #staged: Uint32Array | undefined;
  #free: number;
  readonly #reserved: MutableExtent[] = [];
  #stagedList: StagedFree[] = [];
  #stagedCount = 0;
  /** Where the next contiguous search starts (just past the last allocation). */
  #cursor = 0;
  #largestBound: number;
  #largestExact = true;
  /**
   * Per chunk of CHUNK_BLOCKS blocks, an upper bound on the longest stretch of free blocks inside it (a run that
   * crosses chunk boundaries counts in each chunk only with its part there). Frees keep it exact (a free only
   * lengthens the stretch that contains it, which it measures inside the chunk); allocations leave it a bound and
   * mark the chunk stale; a search that meets a stale chunk whose bound fits recomputes it (`#exactChunkLongest`).
   * Sized like `#words` (capacity), with entries past the last chunk 0.
   */
  #chunkLongest: Uint32Array;
  /** 1 where `#chunkLongest` may be larger than the chunk's longest free stretch. */
  #chunkStale: Uint8Array;

  constructor(blockCount: number) {
    checkBlockCount(blockCount, 'blockCount');
    this.#blockCount = blockCount;
    this.#words = new Uint32Array(wordCount(blockCount));
    this.#setPadding();
    this.#free = blockCount;
    this.#largestBound = blockCount;
    this.#chunkLongest = new Uint32Array(chunkCount(blockCount));
    this.#chunkStale = new Uint8Array(chunkCount(blockCount));
    for (let c = 0; c < this.#chunkLongest.length; c++) this.#chunkLongest[c] = this.#chunkEnd(c) - c * CHUNK_BLOCKS;
  }

  /** Bytes `serialize()` returns for a device of `blockCount` blocks. */
  static serializedByteLength(blockCount: number): number {
    checkBlockCount(blockCount, 'blockCount');
    return HEADER_BYTES + 4 * wordCount(blockCount) + RANGES_BYTES + CRC_BYTES;
  }

  /** Rebuilds an allocator from `serialize()` output (trailing padding allowed). */
  static load(image: Uint8Array): BitmapAllocator {
    if (!(image instanceof Uint8Array)) throw new InvalidArgumentError('image must be a Uint8Array');
    const minBytes = HEADER_BYTES + RANGES_BYTES + CRC_BYTES;
    if (image.byteLength < minBytes) {
      throw new CorruptionError(WHAT, `image of ${image.byteLength} bytes is shorter than the smallest bitmap (${minBytes})`);
    }
    const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
    for (let i = 0; i < MAGIC.length; i++) {
      if (image[i] !== MAGIC[i]) throw new CorruptionError(WHAT, 'bad magic (not an allocator bitmap)');
    }
    const version = view.getUint32(8, true);
    if (version !== VERSION) {
      throw new FormatError(`allocator bitmap version ${version} is not supported (this build reads version ${VERSION})`);
    }
    const blockCount = readU64(view, 16);
    if (blockCount > MAX_BLOCK_COUNT) {
      throw new CorruptionError(WHAT, `blockCount ${blockCount} exceeds the maximum ${MAX_BLOCK_COUNT}`);
    }
    // Distrust the length: the image must hold everything blockCount implies before we allocate for it.
    const length = BitmapAllocator.serializedByteLength(blockCount);
    if (length > image.byteLength) {
      throw new CorruptionError(WHAT, `blockCount ${blockCount} needs ${length} bytes but the image has ${image.byteLength}`);
    }
    const crcOffset = length - CRC_BYTES;
    const stored = view.getUint32(crcOffset, true);
    const actual = crc32(image.subarray(0, crcOffset));
    if (stored !== actual) {
      throw new CorruptionError(WHAT, `checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`);
    }
    const flags = view.getUint32(12, true);
    if (flags !== 0 || view.getUint32(36, true) !== 0) throw new CorruptionError(WHAT, `unknown flags ${flags}`);
    const freeCount = readU64(view, 24);
    const rangeCount = view.getUint32(32, true);
    if (rangeCount > MAX_RESERVED_RANGES) {
      throw new CorruptionError(WHAT, `${rangeCount} reserved ranges (at most ${MAX_RESERVED_RANGES})`);
    }

    const alloc = new BitmapAllocator(0);
    const words = wordCount(blockCount);
    const bitmap = new Uint32Array(words);
    for (let w = 0; w < words; w++) bitmap[w] = view.getUint32(HEADER_BYTES + 4 * w, true);
    alloc.#words = bitmap;
    alloc.#blockCount = blockCount;
    if (blockCount % 32 !== 0) {
      const pad = (0xffffffff << (blockCount % 32)) >>> 0;
      if ((bitmap[words - 1]! & pad) >>> 0 !== pad) throw new CorruptionError(WHAT, 'padding bits past blockCount are not set');
    }
    const counted = blockCount - countOnes(bitmap, 0, blockCount);
    if (counted !== freeCount) {
      throw new CorruptionError(WHAT, `freeCount ${freeCount} does not match the ${counted} free bits`);
    }
    alloc.#free = counted;

    const rangesAt = HEADER_BYTES + 4 * words;
    let prevEnd = -1;
    for (let i = 0; i < MAX_RESERVED_RANGES; i++) {
      const start = readU64(view, rangesAt + i * RANGE_SLOT_BYTES);
      const count = readU64(view, rangesAt + i * RANGE_SLOT_BYTES + 8);
      if (i >= rangeCount) {
        if (start !== 0 || count !== 0) throw new CorruptionError(WHAT, `unused reserved-range slot ${i} is not zero`);
        continue;
      }
      if (count < 1 || start + count > blockCount || start <= prevEnd) {
        throw new CorruptionError(WHAT, `reserved range ${i} { start: ${start}, count: ${count} } is invalid`);
      }
      if (countOnes(bitmap, start, count) !== count) {
        throw new CorruptionError(WHAT, `reserved range ${i} { start: ${start}, count: ${count} } has free blocks`);
      }
      alloc.#reserved.push({ start, count });
      prevEnd = start + count;
    }
    alloc.#largestExact = false;
    alloc.#largestBound = blockCount;
    // Every chunk's bound is its length, stale: the first search through a chunk computes it.
    const chunks = chunkCount(blockCount);
    alloc.#chunkLongest = new Uint32Array(chunks);
    alloc.#chunkStale = new Uint8Array(chunks).fill(1);
    for (let c = 0; c < chunks; c++) alloc.#chunkLongest[c] = alloc.#chunkEnd(c) - c * CHUNK_BLOCKS;
    return alloc;
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  get freeCount(): number {
    return this.#free;
  }

  get stagedCount(): number {
    return this.#stagedCount;
  }

  /** Length of the longest run of free blocks. */
  get largestFreeRun(): number {
    if (!this.#largestExact) {
      this.#largestBound = longestZeroRun(this.#words, 0, this.#blockCount);
      this.#largestExact = true;
    }
    return this.#largestBound;
  }

  allocate(count: number, options: { contiguous?: boolean } = {}): Extent[] {
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new InvalidArgumentError(`allocate: count must be an integer >= 1, got ${String(count)}`);
    }
    if (count > this.#free) {
      throw new FullError(`cannot allocate ${count} blocks: only ${this.#free} of ${this.#blockCount} are free`);
    }
    const start = this.#findRun(count);
    if (start >= 0) {
      this.#take(start, count);
      this.#cursor = start + count;
      return [{ start, count }];
    }
    if (options.contiguous) {
      throw new FullError(
        `cannot allocate ${count} contiguous blocks: the longest free run is ${this.largestFreeRun} blocks ` +
          `(${this.#free} free in all)`,
      );
    }
    const extents = this.#gatherRuns(count);
    for (const e of extents) this.#take(e.start, e.count);
    const last = extents[extents.length - 1]!;
    this.#cursor = last.start + last.count;
    return extents;
  }

  free(extents: readonly Extent[]): void {
    const sorted = this.#validateExtents(extents, 'free');
    this.#checkFreeable(sorted, 'free');
    for (const e of sorted) {
      clearRange(this.#words, e.start, e.count);
      this.#free += e.count;
    }
    this.#afterRelease(sorted);
  }

  markAllocated(extents: readonly Extent[]): void {
    const sorted = this.#validateExtents(extents, 'markAllocated');
    for (const e of sorted) {
      const used = findOne(this.#words, e.start, e.start + e.count);
      if (used < e.start + e.count) {
        throw new InvalidArgumentError(`markAllocated: block ${used} of extent ${describe(e)} is already used`);
      }
    }
    for (const e of sorted) this.#take(e.start, e.count);
  }

  reserve(extent: Extent): void {
    const [e] = this.#validateExtents([extent], 'reserve');
    const { start, count } = e!;
    const end = start + count;
    // The parts of [start, end) not already reserved must be free.
    const gaps: MutableExtent[] = [];
    let at = start;
    for (const r of this.#reserved) {
      if (r.start + r.count <= at) continue;
      if (r.start >= end) break;
      if (r.start > at) gaps.push({ start: at, count: r.start - at });
      at = Math.max(at, r.start + r.count);
    }
    if (at < end) gaps.push({ start: at, count: end - at });
    for (const g of gaps) {
      const used = findOne(this.#words, g.start, g.start + g.count);
      if (used < g.start + g.count) {
        throw new InvalidArgumentError(`reserve: block ${used} of ${describe(extent)} is allocated; only free blocks can be reserved`);
      }
    }
    const merged = this.#mergedReserved(start, count);
    if (merged.length > MAX_RESERVED_RANGES) {
      throw new TooLargeError(`reserve: more than ${MAX_RESERVED_RANGES} separate reserved ranges`);
    }
    this.#reserved.splice(0, this.#reserved.length, ...merged);
    for (const g of gaps) this.#take(g.start, g.count);
  }

  grow(blockCount: number): void {
    checkBlockCount(blockCount, 'grow: blockCount');
    const old = this.#blockCount;
    if (blockCount <= old) return;
    const words = wordCount(blockCount);
    if (words > this.#words.length) {
      const capacity = Math.max(words, Math.min(this.#words.length * 2, wordCount(MAX_BLOCK_COUNT)));
      const next = new Uint32Array(capacity);
      next.set(this.#words.subarray(0, wordCount(old)));
      this.#words = next;
      if (this.#staged) {
        const staged = new Uint32Array(capacity);
        staged.set(this.#staged.subarray(0, wordCount(old)));
        this.#staged = staged;
      }
      // New chunks start empty (bound 0, exact); #afterRelease below raises the ones the new blocks fall in.
      const chunks = chunkCount(capacity * 32);
      const longest = new Uint32Array(chunks);
      longest.set(this.#chunkLongest.subarray(0, chunkCount(old)));
      this.#chunkLongest = longest;
      const stale = new Uint8Array(chunks);
      stale.set(this.#chunkStale.subarray(0, chunkCount(old)));
      this.#chunkStale = stale;
    }
    this.#blockCount = blockCount;
    clearRange(this.#words, old, blockCount - old);
    this.#setPadding();
    this.#free += blockCount - old;
    this.#afterRelease([{ start: old, count: blockCount - old }]);
  }

  isAllocated(blockNo: number): boolean {
    if (!Number.isSafeInteger(blockNo) || blockNo < 0 || blockNo >= this.#blockCount) {
      throw new OutOfRangeError(`block ${String(blockNo)} is outside the allocator (${this.#blockCount} blocks)`);
    }
    return ((this.#words[blockNo >>> 5]! >>> (blockNo & 31)) & 1) === 1;
  }

  stageFree(extents: readonly Extent[], tag: number): void {
    if (!Number.isSafeInteger(tag)) throw new InvalidArgumentError(`stageFree: tag must be a safe integer, got ${String(tag)}`);
    const sorted = this.#validateExtents(extents, 'stageFree');
    this.#checkFreeable(sorted, 'stageFree');
    if (sorted.length === 0) return;
    this.#staged ??= new Uint32Array(this.#words.length);
    let total = 0;
    for (const e of sorted) {
      setRange(this.#staged, e.start, e.count);
      total += e.count;
    }
    this.#stagedList.push({ tag, extents: sorted.map((e) => ({ start: e.start, count: e.count })) });
    this.#stagedCount += total;
  }

  commitFrees(upToTag: number): Extent[] {
    if (typeof upToTag !== 'number' || Number.isNaN(upToTag)) {
      throw new InvalidArgumentError(`commitFrees: upToTag must be a number, got ${String(upToTag)}`);
    }
    const released: Extent[] = [];
    const kept: StagedFree[] = [];
    for (const s of this.#stagedList) {
      if (s.tag <= upToTag) released.push(...s.extents);
      else kept.push(s);
    }
    if (released.length === 0) return released;
    this.#stagedList = kept;
    for (const e of released) {
      clearRange(this.#words, e.start, e.count);
      clearRange(this.#staged!, e.start, e.count);
      this.#stagedCount -= e.count;
      this.#free += e.count;
    }
    this.#afterRelease(released);
    return released;
  }

  /**
   * The checksummed image of the allocator. `asFree`: allocated extents to record as free in the image (the
   * allocator itself is unchanged): blocks a caller holds privately, that nothing the image describes refers to
   * yet (VDE: data a store is still writing when a checkpoint is taken). Each must be allocated, not reserved and
   * not staged, and they must not overlap; otherwise InvalidArgumentError and nothing is returned.
   */
  serialize(options: { asFree?: readonly Extent[] } = {}): Uint8Array {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('serialize options must be an object');
    let bits = this.#words;
    let free = this.#free;
    const asFree = options.asFree ?? [];
    if (asFree.length > 0) {
      const sorted = this.#validateExtents(asFree, 'serialize');
      this.#checkFreeable(sorted, 'serialize');
      bits = this.#words.slice();
      for (const e of sorted) {
        clearRange(bits, e.start, e.count);
        free += e.count;
      }
    }
    const words = wordCount(this.#blockCount);
    const length = BitmapAllocator.serializedByteLength(this.#blockCount);
    const image = new Uint8Array(length);
    const view = new DataView(image.buffer);
    image.set(MAGIC, 0);
    view.setUint32(8, VERSION, true);
    view.setUint32(12, 0, true);
    writeU64(view, 16, this.#blockCount);
    writeU64(view, 24, free);
    view.setUint32(32, this.#reserved.length, true);
    view.setUint32(36, 0, true);
    if (LITTLE_ENDIAN_HOST) {
      image.set(new Uint8Array(bits.buffer, bits.byteOffset, words * 4), HEADER_BYTES);
    } else {
      for (let w = 0; w < words; w++) view.setUint32(HEADER_BYTES + 4 * w, bits[w]!, true);
    }
    const rangesAt = HEADER_BYTES + 4 * words;
    this.#reserved.forEach((r, i) => {
      writeU64(view, rangesAt + i * RANGE_SLOT_BYTES, r.start);
      writeU64(view, rangesAt + i * RANGE_SLOT_BYTES + 8, r.count);
    });
    view.setUint32(length - CRC_BYTES, crc32(image.subarray(0, length - CRC_BYTES)), true);
    return image;
  }

  check(): void {
    const fail = (msg: string): never => {
      throw new Error(`BitmapAllocator.check: ${msg}`);
    };
    const n = this.#blockCount;
    const words = this.#words;
    const free = n - countOnes(words, 0, n);
    if (free !== this.#free) fail(`freeCount ${this.#free} but ${free} free bits`);
    if (n % 32 !== 0) {
      const pad = (0xffffffff << (n % 32)) >>> 0;
      if ((words[wordCount(n) - 1]! & pad) >>> 0 !== pad) fail('padding bits past blockCount are not set');
    }
    if (this.#reserved.length > MAX_RESERVED_RANGES) fail(`${this.#reserved.length} reserved ranges`);
    let prevEnd = -1;
    for (const r of this.#reserved) {
      if (!(r.count >= 1 && r.start > prevEnd && r.start + r.count <= n)) fail(`reserved range ${describe(r)} out of order`);
      if (countOnes(words, r.start, r.count) !== r.count) fail(`reserved range ${describe(r)} has free blocks`);
      prevEnd = r.start + r.count;
    }
    let staged = 0;
    for (const s of this.#stagedList) {
      for (const e of s.extents) {
        staged += e.count;
        if (countOnes(words, e.start, e.count) !== e.count) fail(`staged extent ${describe(e)} has free blocks`);
        if (this.#overlapsReserved(e.start, e.count)) fail(`staged extent ${describe(e)} is reserved`);
        if (!this.#staged || countOnes(this.#staged, e.start, e.count) !== e.count) fail(`staged extent ${describe(e)} not in the staged bitmap`);
      }
    }
    if (staged !== this.#stagedCount) fail(`stagedCount ${this.#stagedCount} but staged extents hold ${staged}`);
    const stagedBits = this.#staged ? countOnes(this.#staged, 0, n) : 0;
    if (stagedBits !== staged) fail(`${stagedBits} staged bits for ${staged} staged blocks (double staging?)`);
    if (this.#cursor < 0 || this.#cursor > n) fail(`cursor ${this.#cursor} outside the device`);
    const bound = this.#largestBound;
    const exact = this.#largestExact;
    this.#largestExact = false;
    const largest = this.largestFreeRun;
    if (bound < largest || (exact && bound !== largest)) fail(`largest-run bound ${bound} (exact: ${exact}) but largest run is ${largest}`);
    if (this.#chunkLongest.length !== this.#chunkStale.length || this.#chunkLongest.length < chunkCount(n)) {
      fail(`chunk summary of ${this.#chunkLongest.length}/${this.#chunkStale.length} entries for ${chunkCount(n)} chunks`);
    }
    for (let c = 0; c < this.#chunkLongest.length; c++) {
      const have = this.#chunkLongest[c]!;
      const stale = this.#chunkStale[c] === 1;
      if (c >= chunkCount(n)) {
        if (have !== 0 || stale) fail(`chunk ${c} past the device has bound ${have} (stale: ${stale})`);
        continue;
      }
      const longest = longestZeroRun(words, c * CHUNK_BLOCKS, this.#chunkEnd(c));
      if (have < longest || (!stale && have !== longest)) {
        fail(`chunk ${c} bound ${have} (stale: ${stale}) but its longest free stretch is ${longest}`);
      }
    }
  }

  /** Start of the best-fitting free run of at least `count` blocks, or -1. */
  #findRun(count: number): number {
    if (count > this.#largestBound) return -1;
    const words = this.#words;
    const n = this.#blockCount;
    if (count === 1) {
      // Any free block fits one block exactly as well as another: first fit from the cursor, O(distance).
      const i = findZero(words, this.#cursor, n);
      if (i < n) return i;
      const j = findZero(words, 0, this.#cursor);
      return j < this.#cursor ? j : -1;
    }
    let best = -1;
    let bestLength = Infinity;
    let candidates = 0;
    let longest = 0; // the longest run measured
    let skipped = 0; // the largest bound of a skipped chunk: no run left unmeasured is longer
    const chunkLongest = this.#chunkLongest;
    // A run measured whole; returns true to stop the search (an exact fit, or enough candidates).
    const consider = (start: number, length: number): boolean => {
      if (length > longest) longest = length;
      if (length < count) return false;
      if (length < bestLength) {
        best = start;
        bestLength = length;
      }
      return length === count || ++candidates >= BEST_FIT_CANDIDATES;
    };
    // Runs that start in [from, to), each measured to its real end, in order; returns true to stop early. A chunk
    // whose free stretches are all shorter than `count` is skipped, except for the one run that can start in it
    // and still fit: the stretch that ends the chunk, if it continues into the next one. So the cost does not
    // grow with the number of holes too small for the request. Invariant: `i === from`, or block `i - 1` or
    // block `i` is used, so the first free block at or after `i` starts a run.
    const scan = (from: number, to: number): boolean => {
      let i = from;
      const lastChunk = Math.floor((to - 1) / CHUNK_BLOCKS);
      while (i < to) {
        let c = Math.floor(i / CHUNK_BLOCKS);
        // The common skip, in a tight loop: a whole chunk (not the last one) whose bound is below `count` and
        // whose last block is used holds the start of no run that fits.
        if (chunkLongest[c]! < count) {
          while (c < lastChunk && chunkLongest[c]! < count && words[(c + 1) * (CHUNK_BLOCKS / 32) - 1]! >>> 31 === 1) {
            if (chunkLongest[c]! > skipped) skipped = chunkLongest[c]!;
            c++;
          }
          if (c * CHUNK_BLOCKS > i) i = c * CHUNK_BLOCKS; // block i - 1 is used
        }
        const chunkEnd = this.#chunkEnd(c);
        const limit = Math.min(chunkEnd, to);
        let bound = chunkLongest[c]!;
        if (bound >= count && this.#chunkStale[c] === 1) bound = this.#exactChunkLongest(c);
        if (bound >= count) {
          const start = findZero(words, i, limit);
          if (start >= limit) {
            i = limit;
            continue;
          }
          const stop = findOne(words, start, n);
          if (consider(start, stop - start)) return true;
          i = stop;
          continue;
        }
        if (bound > skipped) skipped = bound;
        const last = chunkEnd - 1;
        if (chunkEnd >= n || ((words[last >>> 5]! >>> (last & 31)) & 1) === 1) {
          i = limit; // the chunk ends in a used block (or the device ends): nothing starting here fits
          continue;
        }
        const start = findOneBackward(words, chunkEnd, i) + 1; // a stretch shorter than count: a short look back
        if (start >= limit) return false; // starts at or past `to`: out of this scan's range
        const stop = findOne(words, chunkEnd, n);
        if (consider(start, stop - start)) return true;
        i = stop;
      }
      return false;
    };
    const cursor = this.#cursor;
    if (!scan(this.#firstRunStartFrom(cursor), n) && !scan(0, cursor)) {
      // A full pass saw every run (the one straddling the cursor whole in the second part), except runs inside
      // skipped chunks, which are no longer than `skipped`.
      this.#largestBound = Math.max(longest, skipped);
      this.#largestExact = skipped <= longest;
    }
    return best;
  }

  /** The largest free runs seen (see GATHER_WINDOW_BLOCKS) that hold `count` blocks, largest first, the last cut to fit. */
  #gatherRuns(count: number): Extent[] {
    // A min-heap (by length) of runs, trimmed so that it holds just enough blocks.
    const heapStart: number[] = [];
    const heapLength: number[] = [];
    let sum = 0;
    const swap = (a: number, b: number) => {
      [heapStart[a], heapStart[b]] = [heapStart[b]!, heapStart[a]!];
      [heapLength[a], heapLength[b]] = [heapLength[b]!, heapLength[a]!];
    };
    const push = (start: number, length: number) => {
      let i = heapLength.length;
      heapStart.push(start);
      heapLength.push(length);
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (heapLength[parent]! <= heapLength[i]!) break;
        swap(i, parent);
        i = parent;
      }
    };
    const pop = () => {
      const last = heapLength.length - 1;
      swap(0, last);
      heapStart.pop();
      heapLength.pop();
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < last && heapLength[l]! < heapLength[m]!) m = l;
        if (r < last && heapLength[r]! < heapLength[m]!) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    };
    const words = this.#words;
    const n = this.#blockCount;
    const cursor = this.#cursor;
    let longest = 0;
    // Runs that start in [from, to), measured to their real end; stops (true) once the heap holds enough
    // blocks and the scan has covered GATHER_WINDOW_BLOCKS past the cursor.
    const scan = (from: number, to: number, scannedBefore: number): boolean => {
      for (let i = findZero(words, from, to); i < to; ) {
        const stop = findOne(words, i, n);
        const length = stop - i;
        if (length > longest) longest = length;
        if (heapLength.length === 0 || sum < count || length > heapLength[0]!) {
          push(i, length);
          sum += length;
          while (sum - heapLength[0]! >= count) {
            sum -= heapLength[0]!;
            pop();
          }
        }
        if (sum >= count && scannedBefore + stop - from >= GATHER_WINDOW_BLOCKS) return true;
        i = findZero(words, stop, to);
      }
      return false;
    };
    if (!scan(this.#firstRunStartFrom(cursor), n, 0) && !scan(0, cursor, n - cursor)) {
      this.#largestBound = longest; // a full pass: exact
      this.#largestExact = true;
    }
    const runs = heapStart.map((start, k) => ({ start, count: heapLength[k]! }));
    runs.sort((a, b) => b.count - a.count || a.start - b.start);
    const result: Extent[] = [];
    let remaining = count;
    for (const r of runs) {
      if (remaining === 0) break;
      const take = Math.min(r.count, remaining);
      result.push({ start: r.start, count: take });
      remaining -= take;
    }
    return result;
  }

  /**
   * Where a scan that wraps around at `cursor` starts its first part: past the free run that straddles the
   * cursor, if any, because the second part (runs starting before the cursor) measures that run whole. Without
   * this, the run's tail would be seen twice and the multi-extent search could hand out blocks twice.
   */
  #firstRunStartFrom(cursor: number): number {
    if (cursor === 0 || cursor >= this.#blockCount) return cursor;
    const prevUsed = ((this.#words[(cursor - 1) >>> 5]! >>> ((cursor - 1) & 31)) & 1) === 1;
    return prevUsed ? cursor : findOne(this.#words, cursor, this.#blockCount);
  }

  /** Marks free blocks used. */
  #take(start: number, count: number): void {
    setRange(this.#words, start, count);
    this.#free -= count;
    // The bound stays an upper bound; no run is longer than the free blocks.
    this.#largestBound = Math.min(this.#largestBound, this.#free);
    this.#largestExact = false;
    // A chunk now used end to end has no free stretch; in the others the bounds stay upper bounds.
    const end = start + count;
    for (let c = Math.floor(start / CHUNK_BLOCKS); c * CHUNK_BLOCKS < end; c++) {
      const whole = c * CHUNK_BLOCKS >= start && this.#chunkEnd(c) <= end;
      if (whole) this.#chunkLongest[c] = 0;
      this.#chunkStale[c] = whole ? 0 : 1;
    }
  }

  /** End (exclusive) of chunk `c`'s blocks. */
  #chunkEnd(c: number): number {
    return Math.min((c + 1) * CHUNK_BLOCKS, this.#blockCount);
  }

  /** Recomputes chunk `c`'s longest free stretch (one scan of its CHUNK_BLOCKS / 32 words); no longer stale. */
  #exactChunkLongest(c: number): number {
    const longest = longestZeroRun(this.#words, c * CHUNK_BLOCKS, this.#chunkEnd(c));
    this.#chunkLongest[c] = longest;
    this.#chunkStale[c] = 0;
    return longest;
  }

  /**
   * After blocks became free (already counted in `#free`): a freed extent can only create or lengthen the run
   * that contains it, so the bound grows to that run's length and stays exact if it was. The run's ends are
   * looked for at most MERGE_SCAN_BLOCKS away; past that the bound falls back to `#free` (always an upper bound)
   * and stops being exact, so a free next to a huge free run costs O(1), not a scan of the run.
   */
  #afterRelease(extents: readonly Extent[]): void {
    const n = this.#blockCount;
    const words = this.#words;
    for (const e of extents) {
      // Each chunk the extent touches: the free stretch holding its part there, measured inside the chunk
      // (whole chunks in between are free end to end). A bound that was exact stays exact.
      const end = e.start + e.count;
      for (let c = Math.floor(e.start / CHUNK_BLOCKS); c * CHUNK_BLOCKS < end; c++) {
        const chunkStart = c * CHUNK_BLOCKS;
        const chunkEnd = this.#chunkEnd(c);
        const left = findOneBackward(words, Math.max(e.start, chunkStart), chunkStart) + 1;
        const right = findOne(words, Math.min(end, chunkEnd), chunkEnd);
        if (right - left > this.#chunkLongest[c]!) this.#chunkLongest[c] = right - left;
      }
      const floor = Math.max(0, e.start - MERGE_SCAN_BLOCKS);
      const left = findOneBackward(this.#words, e.start, floor) + 1;
      const ceiling = Math.min(n, e.start + e.count + MERGE_SCAN_BLOCKS);
      const right = findOne(this.#words, e.start + e.count, ceiling);
      if ((left === floor && floor > 0) || (right === ceiling && ceiling < n)) {
        this.#largestBound = Math.max(this.#largestBound, this.#free);
        this.#largestExact = false;
      } else {
        this.#largestBound = Math.max(this.#largestBound, right - left);
      }
    }
  }

  #setPadding(): void {
    const n = this.#blockCount;
    if (n % 32 !== 0) {
      const w = wordCount(n) - 1;
      this.#words[w] = (this.#words[w]! | (0xffffffff << (n % 32))) >>> 0;
    }
  }

  #validateExtents(extents: readonly Extent[], op: string): MutableExtent[] {
    if (!Array.isArray(extents)) throw new InvalidArgumentError(`${op}: extents must be an array`);
    const sorted: MutableExtent[] = [];
    for (const e of extents as readonly unknown[]) {
      if (typeof e !== 'object' || e === null) throw new InvalidArgumentError(`${op}: ${String(e)} is not an extent`);
      const { start, count } = e as Extent;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || count < 1) {
        throw new InvalidArgumentError(`${op}: extent ${describe(e as Extent)} needs an integer start and an integer count >= 1`);
      }
      if (start < 0 || start + count > this.#blockCount) {
        throw new OutOfRangeError(`${op}: extent ${describe(e as Extent)} is outside the allocator (${this.#blockCount} blocks)`);
      }
      sorted.push({ start, count });
    }
    sorted.sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      if (sorted[i]!.start < prev.start + prev.count) {
        throw new InvalidArgumentError(`${op}: extents ${describe(prev)} and ${describe(sorted[i]!)} overlap`);
      }
    }
    return sorted;
  }

  /** Each extent must be allocated, not reserved and not staged. */
  #checkFreeable(sorted: readonly Extent[], op: string): void {
    for (const e of sorted) {
      const end = e.start + e.count;
      const free = findZero(this.#words, e.start, end);
      if (free < end) throw new InvalidArgumentError(`${op}: block ${free} of extent ${describe(e)} is already free`);
      if (this.#overlapsReserved(e.start, e.count)) {
        throw new InvalidArgumentError(`${op}: extent ${describe(e)} overlaps a reserved region`);
      }
      if (this.#staged) {
        const staged = findOne(this.#staged, e.start, end);
        if (staged < end) throw new InvalidArgumentError(`${op}: block ${staged} of extent ${describe(e)} is staged for a deferred free`);
      }
    }
  }

  #overlapsReserved(start: number, count: number): boolean {
    for (const r of this.#reserved) {
      if (r.start < start + count && start < r.start + r.count) return true;
    }
    return false;
  }

  /** The reserved list with `[start, start + count)` added, sorted and merged (touching ranges join). */
  #mergedReserved(start: number, count: number): MutableExtent[] {
    const all = [...this.#reserved.map((r) => ({ ...r })), { start, count }].sort((a, b) => a.start - b.start);
    const merged: MutableExtent[] = [];
    for (const r of all) {
      const last = merged[merged.length - 1];
      if (last && r.start <= last.start + last.count) {
        last.count = Math.max(last.count, r.start + r.count - last.start);
      } else {
        merged.push(r);
      }
    }
    return merged;
  }
}
