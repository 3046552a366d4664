import {
  BRANCH_ENTRY_HEADER,
  HEADER_BYTES,
  LEAF_ENTRY_HEADER,
  MAGIC0,
  MAGIC1,
  OFF_COUNT,
  OFF_HEAP_START,
  OFF_LEVEL,
  OFF_MAGIC,
  OFF_TYPE,
  SLOT_BYTES,
  TYPE_BRANCH,
  TYPE_LEAF,
  EMPTY,
  setU16,
  setU32,
  u16,
  u32,
} from './format.js';

/**
 * The entries of one page-to-be, gathered by reference from page buffers (and from the new entry of a put):
 * no copies and no object per entry. The input of the slow paths that rewrite pages (split, merge,
 * redistribution, compaction).
 *
 * - Leaf entry i: the serialized entry (header, key, value) at `bufs[i][offs[i] .. offs[i] + lens[i])`.
 * - Branch entry i: child `childs[i]` and key `bufs[i][offs[i] .. offs[i] + lens[i])`. The entry that becomes
 *   the first entry of a page is written without its key (see `writePage`).
 *
 * The arrays are reused between calls; `n` is the length. The referenced buffers must not change while the list
 * is in use.
 */
export class EntryList {
  leaf = true;
  n = 0;
  readonly bufs: Uint8Array[] = [];
  readonly offs: number[] = [];
  readonly lens: number[] = [];
  readonly childs: number[] = [];

  reset(leaf: boolean): this {
    this.leaf = leaf;
    this.n = 0;
    return this;
  }

  /** Drops the buffer references (so that replaced page buffers can be collected). */
  clear(): void {
    this.bufs.fill(EMPTY, 0, this.n);
    this.n = 0;
  }

  add(buf: Uint8Array, off: number, len: number, child: number): void {
    const i = this.n++;
    this.bufs[i] = buf;
    this.offs[i] = off;
    this.lens[i] = len;
    this.childs[i] = child;
  }

  /** Appends entries [from, to) of a page buffer of this list's kind. */
  addPage(b: Uint8Array, from: number, to: number): void {
    if (this.leaf) {
      for (let i = from; i < to; i++) {
        const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
        this.add(b, off, LEAF_ENTRY_HEADER + u16(b, off) + u16(b, off + 2), 0);
      }
    } else {
      for (let i = from; i < to; i++) {
        const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
        this.add(b, off + BRANCH_ENTRY_HEADER, u16(b, off + 4), u32(b, off));
      }
    }
  }

  /** Appends entries [from, to) of another list. */
  addList(l: EntryList, from: number, to: number): void {
    for (let i = from; i < to; i++) this.add(l.bufs[i]!, l.offs[i]!, l.lens[i]!, l.childs[i]!);
  }

  /** Bytes (slot included) entry i takes in a page, when it is not the first entry of a branch page. */
  cost(i: number): number {
    return SLOT_BYTES + (this.leaf ? this.lens[i]! : BRANCH_ENTRY_HEADER + this.lens[i]!);
  }

  /** Bytes of slots and entries of a page holding entries [from, to). */
  bytes(from: number, to: number): number {
    let s = 0;
    for (let i = from; i < to; i++) s += this.cost(i);
    if (!this.leaf && to > from) s -= this.lens[from]!;
    return s;
  }

  /** View of entry i's key (leaf or branch). */
  key(i: number): Uint8Array {
    const b = this.bufs[i]!;
    const off = this.offs[i]!;
    return this.leaf ? b.subarray(off + LEAF_ENTRY_HEADER, off + LEAF_ENTRY_HEADER + u16(b, off)) : b.subarray(off, off + this.lens[i]!);
  }
}

/**
 * Writes entries [from, to) of `list` as a page image into `dst` (every header field; free space is left as it
 * is). The first entry of a branch page is written without its key. `dst` must not be one of the list's buffers.
 * Returns heapStart. The caller guarantees that the entries fit.
 */
export function writePage(dst: Uint8Array, level: number, list: EntryList, from: number, to: number): number {
  const leaf = list.leaf;
  dst[0] = 0;
  dst[1] = 0;
  dst[2] = 0;
  dst[3] = 0;
  dst[OFF_MAGIC] = MAGIC0;
  dst[OFF_MAGIC + 1] = MAGIC1;
  dst[OFF_TYPE] = leaf ? TYPE_LEAF : TYPE_BRANCH;
  dst[OFF_LEVEL] = level;
  setU16(dst, OFF_COUNT, to - from);
  dst[10] = 0;
  dst[11] = 0;
  let heap = dst.length;
  const bufs = list.bufs;
  const offs = list.offs;
  const lens = list.lens;
  if (leaf) {
    // Entries go down the heap in key order. Consecutive entries that lie the same way in their source (entry i
    // right below entry i-1, as pages written here and sequential inserts leave them) are copied as one run.
    let runBuf: Uint8Array | null = null;
    let runLo = 0;
    let runHi = 0;
    for (let i = from; i < to; i++) {
      const b = bufs[i]!;
      const off = offs[i]!;
      const len = lens[i]!;
      if (b !== runBuf || off + len !== runLo) {
        if (runBuf !== null) copyBytes(dst, heap, runBuf, runLo, runHi - runLo);
        runBuf = b;
        runHi = off + len;
      }
      runLo = off;
      heap -= len;
      setU16(dst, HEADER_BYTES + SLOT_BYTES * (i - from), heap);
    }
    if (runBuf !== null) copyBytes(dst, heap, runBuf, runLo, runHi - runLo);
  } else {
    for (let i = from; i < to; i++) {
      const kl = i === from ? 0 : lens[i]!;
      heap -= BRANCH_ENTRY_HEADER + kl;
      setU32(dst, heap, list.childs[i]!);
      setU16(dst, heap + 4, kl);
      if (kl > 0) copyBytes(dst, heap + BRANCH_ENTRY_HEADER, bufs[i]!, offs[i]!, kl);
      setU16(dst, HEADER_BYTES + SLOT_BYTES * (i - from), heap);
    }
  }
  setU32(dst, OFF_HEAP_START, heap);
  return heap;
}

/** dst[dOff ..] = src[sOff .. sOff + len): a loop for short runs (a subarray view costs more than it saves). */
export function copyBytes(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, len: number): void {
  if (len > 32 && sOff === 0 && len === src.length) {
    dst.set(src, dOff);
  } else if (len <= 32) {
    for (let i = 0; i < len; i++) dst[dOff + i] = src[sOff + i]!;
  } else {
    dst.set(src.subarray(sOff, sOff + len), dOff);
  }
}

export const SPLIT_EVEN = 0;
/** The new entry is last and the page is the last of its level: the left page keeps everything else. */
export const SPLIT_APPEND = 1;
/** Ascending inserts around `at`: keep the left page as full as the minimum fill of the right page allows. */
export const SPLIT_ASC = 2;
/** Descending inserts around `at`: keep the right page as full as the minimum fill of the left page allows. */
export const SPLIT_DESC = 3;

/**
 * Where to cut an overflowing list into a left page [0, s) and a right page [s, n); `at` is the index of the
 * inserted entry (SPLIT_ASC/SPLIT_DESC). For a branch the key of entry s moves up to the parent (the right
 * page's first entry has no key), and both pages keep at least two entries. Both pages fit `capacity` and hold
 * at least `minFill` bytes, except the right page of SPLIT_APPEND (allowed under-full on the right edge of the
 * tree, see BTree.check()). A policy that cannot meet this falls back to SPLIT_EVEN, which minimizes the larger
 * page among the cuts that leave both pages at the minimum fill. For leaves such a cut always exists (entries
 * are at most half a page and the list overflows by at most one entry); for branches, with separators of up to
 * a third of a page, contrived key sizes can leave none, and then one page may end up under the minimum fill.
 */
export function splitPoint(list: EntryList, policy: number, at: number, capacity: number, minFill: number): number {
  const n = list.n;
  const leaf = list.leaf;
  const lo = leaf ? 1 : 2;
  const hi = leaf ? n - 1 : n - 2;
  if (hi < lo) throw new Error(`btree split: ${n} entries cannot be split (internal error)`);
  // left(s) = bytes of [0, s) = prefix[s]; right(s) = total - left(s), minus the key of entry s for a branch.
  let total = 0;
  for (let i = 0; i < n; i++) total += list.cost(i);
  if (!leaf) total -= list.lens[0]!;
  const rightOf = (s: number, left: number): number => total - left - (leaf ? 0 : list.lens[s]!);
  const ok = (left: number, right: number): boolean =>
    left <= capacity && right <= capacity && left >= minFill && right >= minFill;
  if (policy === SPLIT_APPEND) {
    const left = list.bytes(0, hi);
    if (left <= capacity && left >= minFill && rightOf(hi, left) <= capacity) return hi;
  } else if (policy === SPLIT_ASC) {
    // Entries after the new one (a tail the inserts stay in front of) that fill a page of their own are cut
    // off once; a smaller tail rides along in the right page. Else: the largest s <= at that leaves the right
    // page at least minFill, so the left page is as full as the fill rule allows.
    if (at + 1 >= lo && at + 1 <= hi) {
      const left = list.bytes(0, at + 1);
      if (ok(left, rightOf(at + 1, left))) return at + 1;
    }
    let left = total;
    for (let s = n - 1; s >= lo; s--) {
      left -= list.cost(s);
      if (s > hi || s > at) continue;
      const right = rightOf(s, left);
      if (right > capacity || left < minFill) break;
      if (ok(left, right)) return s;
    }
  } else if (policy === SPLIT_DESC) {
    // The mirror image: a head before the new entry that fills a page is cut off; else the smallest s > at that
    // leaves the left page at least minFill.
    if (at >= lo && at <= hi) {
      const left = list.bytes(0, at);
      if (ok(left, rightOf(at, left))) return at;
    }
    let left = leaf ? 0 : -list.lens[0]!;
    for (let s = 1; s <= hi; s++) {
      left += list.cost(s - 1);
      if (s < lo || s <= at) continue;
      const right = rightOf(s, left);
      if (left > capacity || right < minFill) break;
      if (ok(left, right)) return s;
    }
  }
  // Even: the smallest larger page among the cuts that leave both pages at the minimum fill (for a branch, the
  // key that moves up counts on neither side, so the most even cut can leave one side under it); if no cut
  // does, the smallest larger page.
  let best = -1;
  let bestMax = Infinity;
  let bestFilled = -1;
  let bestFilledMax = Infinity;
  let left = leaf ? 0 : -list.lens[0]!;
  for (let s = 1; s <= hi; s++) {
    left += list.cost(s - 1);
    if (s < lo) continue;
    const right = rightOf(s, left);
    const m = Math.max(left, right);
    if (m < bestMax) {
      bestMax = m;
      best = s;
    }
    if (m < bestFilledMax && ok(left, right)) {
      bestFilledMax = m;
      bestFilled = s;
    }
  }
  if (bestFilled >= 0) return bestFilled;
  if (bestMax > capacity) throw new Error(`btree split: halves of ${bestMax} bytes do not fit a page (internal error)`);
  return best;
}
