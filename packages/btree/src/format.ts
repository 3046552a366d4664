import { CorruptionError, crc32 } from '@vde/block-device';

/*
 * Page layout (README "Page format"): little-endian, slotted.
 *
 *   0  u32 checksum   CRC-32 of bytes 4..pageSize
 *   4  u8[2] magic    'B' 'T'
 *   6  u8  type       1 = leaf, 2 = branch
 *   7  u8  level      0 for leaves, child level + 1 for branches, <= MAX_LEVEL
 *   8  u16 count      number of entries
 *  10  u16 reserved   0
 *  12  u32 heapStart  lowest heap byte (pageSize when empty)
 *  16  u16 slots[count]  entry offsets, in strictly ascending key order
 *  ... free ... heap (entries) up to pageSize
 *
 *   leaf entry:   u16 keyLen, u16 valueLen, key, value
 *   branch entry: u32 child, u16 keyLen, key   (entry 0 has keyLen 0: no lower bound)
 *
 * Invariant: a page in memory is always a well-formed serialized page except for its checksum, which is set
 * only when the page is written (see BTree.flush).
 */

export const HEADER_BYTES = 16;
export const SLOT_BYTES = 2;
export const LEAF_ENTRY_HEADER = 4;
export const BRANCH_ENTRY_HEADER = 6;
export const MAGIC0 = 0x42; // 'B'
export const MAGIC1 = 0x54; // 'T'
export const TYPE_LEAF = 1;
export const TYPE_BRANCH = 2;
/** Deepest tree we accept; a page claiming a higher level is corrupt (bounds recursion on hostile input). */
export const MAX_LEVEL = 63;

export const OFF_CHECKSUM = 0;
export const OFF_MAGIC = 4;
export const OFF_TYPE = 6;
export const OFF_LEVEL = 7;
export const OFF_COUNT = 8;
export const OFF_HEAP_START = 12;

export const EMPTY = new Uint8Array(0);

/** Limits that follow from the page size (README "Sizes and fill"). */
export interface Limits {
  readonly pageSize: number;
  /** Bytes for slots and entries: pageSize - header. */
  readonly capacity: number;
  readonly maxKeyBytes: number;
  /** Values up to this size are accepted with any key; longer ones while key + value <= maxEntryBytes. */
  readonly maxValueBytes: number;
  /** Largest key + value of a leaf entry: two of them always fit a page, so a split always succeeds. */
  readonly maxEntryBytes: number;
  /** Non-root pages hold at least this many bytes of slots+entries. */
  readonly minFill: number;
}

export function limitsFor(pageSize: number): Limits {
  const capacity = pageSize - HEADER_BYTES;
  const quarter = Math.floor(capacity / 4);
  // A branch entry (slot + header + key) takes at most a third of a page, so a branch always holds three; a leaf
  // entry (slot + header + key + value) at most half, so a leaf always holds two. Then every split of an
  // overfull page gives two halves that fit, each at least a quarter full.
  const maxKeyBytes = Math.min(1024, Math.floor(capacity / 3) - SLOT_BYTES - BRANCH_ENTRY_HEADER);
  const maxEntryBytes = Math.floor(capacity / 2) - SLOT_BYTES - LEAF_ENTRY_HEADER;
  return {
    pageSize,
    capacity,
    maxKeyBytes,
    maxValueBytes: maxEntryBytes - maxKeyBytes,
    maxEntryBytes,
    minFill: quarter,
  };
}

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
export function setU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = v >>> 8;
}
export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
export function setU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Unsigned lexicographic comparison of a[aOff, aOff+aLen) with b[bOff, bOff+bLen). No allocation. */
export function compareRange(
  a: Uint8Array,
  aOff: number,
  aLen: number,
  b: Uint8Array,
  bOff: number,
  bLen: number,
): number {
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const d = a[aOff + i]! - b[bOff + i]!;
    if (d !== 0) return d;
  }
  return aLen - bLen;
}

export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  return compareRange(a, 0, a.length, b, 0, b.length);
}

/**
 * One entry outside a page, used by the rarely taken paths (split, merge, bulk load). `value` is set for leaf
 * cells, `child` for branch cells. Byte arrays may be views into page buffers that must not change while the
 * cell is alive.
 */
export interface Cell {
  key: Uint8Array;
  value: Uint8Array;
  child: number;
}

export function cellBytes(c: Cell, leaf: boolean): number {
  return leaf
    ? SLOT_BYTES + LEAF_ENTRY_HEADER + c.key.length + c.value.length
    : SLOT_BYTES + BRANCH_ENTRY_HEADER + c.key.length;
}

export function cellsBytes(cells: readonly Cell[], leaf: boolean): number {
  let s = 0;
  for (const c of cells) s += cellBytes(c, leaf);
  return s;
}

/** Serializes `cells` into a fresh page buffer (checksum left 0). The caller guarantees they fit. */
export function encodePage(pageSize: number, leaf: boolean, level: number, cells: readonly Cell[]): Uint8Array {
  const b = new Uint8Array(pageSize);
  b[OFF_MAGIC] = MAGIC0;
  b[OFF_MAGIC + 1] = MAGIC1;
  b[OFF_TYPE] = leaf ? TYPE_LEAF : TYPE_BRANCH;
  b[OFF_LEVEL] = level;
  setU16(b, OFF_COUNT, cells.length);
  let heap = pageSize;
  for (let i = 0; i < cells.length; i++) {
    const c = cells[i]!;
    if (leaf) {
      heap -= LEAF_ENTRY_HEADER + c.key.length + c.value.length;
      setU16(b, heap, c.key.length);
      setU16(b, heap + 2, c.value.length);
      b.set(c.key, heap + 4);
      b.set(c.value, heap + 4 + c.key.length);
    } else {
      heap -= BRANCH_ENTRY_HEADER + c.key.length;
      setU32(b, heap, c.child);
      setU16(b, heap + 4, c.key.length);
      b.set(c.key, heap + 6);
    }
    setU16(b, HEADER_BYTES + SLOT_BYTES * i, heap);
  }
  setU32(b, OFF_HEAP_START, heap);
  return b;
}

/** Checksum as stored at offset 0. */
export function pageChecksum(b: Uint8Array): number {
  return crc32(b.subarray(4));
}

export function sealPage(b: Uint8Array): void {
  setU32(b, OFF_CHECKSUM, pageChecksum(b));
}

/** What a validated page header says. */
export interface PageInfo {
  leaf: boolean;
  level: number;
  count: number;
  heapStart: number;
  /** Bytes of slots + live entries. */
  used: number;
}

/**
 * Validates a page read from disk (or, with `verifyChecksum` false, one held in memory) and returns its header.
 * Distrusts every length: nothing is allocated or indexed from a value that was not bounded first.
 */
export function validatePage(pageNo: number, b: Uint8Array, lim: Limits, verifyChecksum: boolean): PageInfo {
  const what = `btree page ${pageNo}`;
  const pageSize = lim.pageSize;
  if (b.byteLength !== pageSize) throw new CorruptionError(what, `page is ${b.byteLength} bytes, expected ${pageSize}`);
  if (verifyChecksum) {
    const stored = u32(b, OFF_CHECKSUM);
    const actual = pageChecksum(b);
    if (stored !== actual) {
      throw new CorruptionError(what, `checksum mismatch (stored ${hex32(stored)}, computed ${hex32(actual)})`);
    }
  }
  if (b[OFF_MAGIC] !== MAGIC0 || b[OFF_MAGIC + 1] !== MAGIC1) throw new CorruptionError(what, 'bad magic');
  const type = b[OFF_TYPE]!;
  if (type !== TYPE_LEAF && type !== TYPE_BRANCH) throw new CorruptionError(what, `unknown page type ${type}`);
  const leaf = type === TYPE_LEAF;
  const level = b[OFF_LEVEL]!;
  if (level > MAX_LEVEL) throw new CorruptionError(what, `level ${level} exceeds ${MAX_LEVEL}`);
  if (leaf !== (level === 0)) throw new CorruptionError(what, `${leaf ? 'leaf' : 'branch'} page at level ${level}`);
  const count = u16(b, OFF_COUNT);
  const heapStart = u32(b, OFF_HEAP_START);
  const slotEnd = HEADER_BYTES + SLOT_BYTES * count;
  if (slotEnd > pageSize || heapStart < slotEnd || heapStart > pageSize) {
    throw new CorruptionError(what, `count ${count} / heapStart ${heapStart} do not fit a ${pageSize}-byte page`);
  }
  // A branch with one child is never written (the tree collapses it), and a delete under it would find no sibling.
  if (!leaf && count < 2) throw new CorruptionError(what, `branch page with ${count} children`);
  const hdr = leaf ? LEAF_ENTRY_HEADER : BRANCH_ENTRY_HEADER;
  let used = 0;
  let prevOff = -1;
  let prevLen = 0;
  for (let i = 0; i < count; i++) {
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
    if (off < heapStart || off + hdr > pageSize) throw new CorruptionError(what, `slot ${i} points outside the heap`);
    let keyOff: number;
    let keyLen: number;
    let size: number;
    if (leaf) {
      keyLen = u16(b, off);
      const valueLen = u16(b, off + 2);
      if (keyLen > lim.maxKeyBytes || keyLen + valueLen > lim.maxEntryBytes) {
        throw new CorruptionError(what, `entry ${i} has key/value length ${keyLen}/${valueLen} over the limit`);
      }
      keyOff = off + 4;
      size = hdr + keyLen + valueLen;
    } else {
      keyLen = u16(b, off + 4);
      if (keyLen > lim.maxKeyBytes) throw new CorruptionError(what, `entry ${i} has key length ${keyLen} over the limit`);
      if ((i === 0) !== (keyLen === 0)) {
        throw new CorruptionError(what, i === 0 ? 'branch entry 0 has a key' : `branch entry ${i} has an empty key`);
      }
      keyOff = off + 6;
      size = hdr + keyLen;
    }
    if (off + size > pageSize) throw new CorruptionError(what, `entry ${i} runs past the end of the page`);
    if (prevOff >= 0 && compareRange(b, prevOff, prevLen, b, keyOff, keyLen) >= 0) {
      throw new CorruptionError(what, `keys out of order at entry ${i}`);
    }
    if (leaf || i > 0) {
      prevOff = keyOff;
      prevLen = keyLen;
    }
    used += SLOT_BYTES + size;
  }
  if (used > lim.capacity) throw new CorruptionError(what, `entries hold ${used} bytes, more than the page`);
  return { leaf, level, count, heapStart, used };
}

function hex32(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

/**
 * Shortest key s with left < s <= right (suffix truncation of a separator). Precondition: left < right.
 * Returns a copy (never a view of a page).
 */
export function shortestSeparator(left: Uint8Array, right: Uint8Array): Uint8Array {
  const n = Math.min(left.length, right.length);
  let i = 0;
  while (i < n && left[i] === right[i]) i++;
  // right[i] > left[i], or left is a prefix of right (i === left.length): right[0..i] is > left.
  return right.slice(0, i + 1);
}
