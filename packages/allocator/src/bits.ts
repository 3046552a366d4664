/*
 * Word-at-a-time bit operations on a bitmap stored in a Uint32Array: bit `i` is bit `i & 31` (least significant
 * first) of word `i >>> 5`. Indexes are below 2^32 (the allocator caps blockCount there), so `>>> 5` and `& 31`
 * are exact. Scans skip whole words: full words (0xFFFFFFFF) when looking for a 0, zero words when looking for a 1.
 */

/** Index of the lowest set bit of a non-zero 32-bit value. */
function lowestBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

export function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** Mask of `n` bits (1..32) starting at bit `shift`. */
function mask(shift: number, n: number): number {
  return n === 32 ? 0xffffffff : (((1 << n) - 1) << shift) >>> 0;
}

/** First index in `[from, end)` whose bit is 0, or `end`. */
export function findZero(words: Uint32Array, from: number, end: number): number {
  if (from >= end) return end;
  let w = from >>> 5;
  const lastWord = (end - 1) >>> 5;
  let bits = ~words[w]! & (0xffffffff << (from & 31));
  while (bits === 0) {
    if (++w > lastWord) return end;
    bits = ~words[w]!;
  }
  const i = w * 32 + lowestBit(bits);
  return i < end ? i : end;
}

/** First index in `[from, end)` whose bit is 1, or `end`. */
export function findOne(words: Uint32Array, from: number, end: number): number {
  if (from >= end) return end;
  let w = from >>> 5;
  const lastWord = (end - 1) >>> 5;
  let bits = words[w]! & (0xffffffff << (from & 31));
  while (bits === 0) {
    if (++w > lastWord) return end;
    bits = words[w]!;
  }
  const i = w * 32 + lowestBit(bits);
  return i < end ? i : end;
}

/** Last index in `[floor, before)` whose bit is 1, or `floor - 1`. */
export function findOneBackward(words: Uint32Array, before: number, floor = 0): number {
  if (before <= floor) return floor - 1;
  let w = (before - 1) >>> 5;
  const floorWord = floor >>> 5;
  const top = (before - 1) & 31;
  let bits = words[w]! & mask(0, top + 1);
  while (bits === 0) {
    if (w <= floorWord) return floor - 1;
    bits = words[--w]!;
  }
  const i = w * 32 + (31 - Math.clz32(bits));
  return i >= floor ? i : floor - 1;
}

/** Sets bits `[start, start + count)`. */
export function setRange(words: Uint32Array, start: number, count: number): void {
  const end = start + count;
  let i = start;
  while (i < end) {
    const shift = i & 31;
    const n = Math.min(32 - shift, end - i);
    words[i >>> 5] = (words[i >>> 5]! | mask(shift, n)) >>> 0;
    i += n;
  }
}

/** Clears bits `[start, start + count)`. */
export function clearRange(words: Uint32Array, start: number, count: number): void {
  const end = start + count;
  let i = start;
  while (i < end) {
    const shift = i & 31;
    const n = Math.min(32 - shift, end - i);
    words[i >>> 5] = (words[i >>> 5]! & ~mask(shift, n)) >>> 0;
    i += n;
  }
}

/** Number of 1 bits in `[start, start + count)`. */
export function countOnes(words: Uint32Array, start: number, count: number): number {
  const end = start + count;
  let i = start;
  let ones = 0;
  while (i < end) {
    const shift = i & 31;
    const n = Math.min(32 - shift, end - i);
    const w = words[i >>> 5]!;
    ones += n === 32 ? popcount(w) : popcount(w & mask(shift, n));
    i += n;
  }
  return ones;
}
