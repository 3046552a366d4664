import {
  AbortedError,
  CorruptionError,
  InvalidArgumentError,
  ReadOnlyError,
  TooLargeError,
} from '@vde/block-device';
import {
  BRANCH_ENTRY_HEADER,
  type Cell,
  EMPTY,
  HEADER_BYTES,
  LEAF_ENTRY_HEADER,
  type Limits,
  MAX_LEVEL,
  type PageInfo,
  OFF_COUNT,
  OFF_HEAP_START,
  SLOT_BYTES,
  cellBytes,
  cellsBytes,
  compareKeys,
  compareRange,
  encodePage,
  limitsFor,
  sealPage,
  setU16,
  setU32,
  shortestSeparator,
  u16,
  u32,
  validatePage,
} from './format.js';
import {
  EntryList,
  SPLIT_APPEND,
  SPLIT_ASC,
  SPLIT_DESC,
  SPLIT_EVEN,
  copyBytes,
  splitPoint,
  writePage,
} from './entry-list.js';
import { Page, PageCache } from './page-cache.js';
import type { PageStore } from './page-store.js';
import { type Bounds, type KeyRange, toBounds } from './range.js';

export interface BTreeOptions {
  /** Bound of the page cache (clean pages); default 8 MiB. Dirty and pinned pages may exceed it. */
  cacheSizeBytes?: number;
  /** Never mutate: mutations throw `ReadOnlyError`. Used to read an older flushed root. */
  readOnly?: boolean;
}

export type CachedResult = { done: true; previous: Uint8Array | undefined } | { done: false };

/** One leaf's worth of `entryBatches()` output: `keys[i]` maps to `values[i]`. */
export interface EntryBatch {
  keys: Uint8Array[];
  values: Uint8Array[];
}

/**
 * One leaf's worth of `entryRuns()` output, without a view per entry: `bytes` is a private copy of the leaf and
 * `offsets[i]` the byte offset of entry i in it, laid out as in the leaf page: u16 key length (LE), u16 value length
 * (LE), the key, the value (see "Page format" in the README).
 */
export interface EntryRun {
  bytes: Uint8Array;
  offsets: number[];
}

export interface BTreeStats {
  /** Pages in the tree; exact for trees created in this process, after open() known only once check() ran (-1 before). */
  pages: number;
  cachedPages: number;
  dirtyPages: number;
  hits: number;
  misses: number;
  /** Pages read ahead by scans (each also counted in `misses`), see `entries()`. */
  readAhead: number;
  evictions: number;
  depth: number;
}

const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;
/** Prefetch pin sets kept at most (oldest released first), so callers that never come back cannot pin everything. */
const MAX_PIN_SETS = 4096;
const MAX_PAGE_NO = 0xfffffffe;
/**
 * A flush seals this many bytes of pages (and builds their search indexes: about 1-2 ms of 4 KiB pages) between two
 * turns of the event loop.
 */
const FLUSH_TURN_BYTES = 1 << 20;
/** A scan reads at most this many leaves ahead of the one it waits for (and at most an eighth of the cache). */
const READ_AHEAD_PAGES = 32;

/** A page read in flight: the store's promise and the flush count it started at (see BTree #flushes). */
interface PageRead {
  read: Promise<Uint8Array>;
  flushes: number;
}

/** Per scan: how many pages it has waited for so far (its read-ahead grows with it). */
interface ScanState {
  loads: number;
}

const MODE_KEYS = 0;
const MODE_ENTRIES = 1;
const MODE_COUNT = 2;
/** Entry offsets into the leaf copy, no views (entryRuns). */
const MODE_RAW = 3;

// Leaf changes that take the slow path (#rebuild).
const K_INSERT = 0;
const K_REPLACE = 1;
const K_REMOVE = 2;
// In-place edits of the topmost changed page (a separator inserted, removed, or given a new key).
const TOP_NONE = 0;
const TOP_INSERT = 1;
const TOP_REMOVE = 2;
const TOP_REPLACE = 3;
// Steps of a #rebuild plan.
const ST_SPLIT = 0;
const ST_REWRITE = 1;
const ST_MERGE = 2;
const ST_REDIST = 3;
const ST_NEWROOT = 4;
const ST_COLLAPSE = 5;

/** One level of a #rebuild plan. */
interface Step {
  kind: number;
  /** SPLIT/REWRITE: the page on the path; MERGE/REDIST: the left page; NEWROOT/COLLAPSE: the old root. */
  page: Page;
  /** MERGE: the right page (dropped); REDIST: the right page. */
  other: Page | null;
  /** The new content: SPLIT/REDIST [0, s) left and [s, n) right; REWRITE/MERGE all of it. */
  list: EntryList;
  s: number;
  /** SPLIT: the left page keeps its bytes (an append split of a leaf). */
  keepLeft: boolean;
  /** SPLIT: the new right page; NEWROOT: the new root; COLLAPSE: the child that becomes the root. */
  newNo: number;
  /** SPLIT/REDIST: the separator between the two pages (a copy). */
  sep: Uint8Array;
  /** NEWROOT: the right child. */
  child: number;
  /** SPLIT: index of the inserted entry in `list` (-1: none), and the insert run it continues (Page.run). */
  newPos?: number;
  run?: number;
}

/** Consecutive inserts next to each other (same direction) before a split cuts at the insert instead of the middle. */
const SEQ_RUN = 3;

/** Page.run after an insert at `pos`. */
function runAfter(p: Page, pos: number): number {
  if (pos === p.lastIns + 1) return (p.run > 0 ? p.run : 0) + 1;
  if (pos === p.lastIns) return (p.run < 0 ? p.run : 0) - 1;
  return 0;
}

function noteInsert(p: Page, pos: number): void {
  p.run = runAfter(p, pos);
  p.lastIns = pos;
}

function noteRemove(p: Page, pos: number): void {
  if (pos < p.lastIns) p.lastIns--;
  else if (pos === p.lastIns) {
    p.lastIns = -2;
    p.run = 0;
  }
}

/** The key of the entry at `off` of a leaf copy (a view). */
function rawKeyAt(bytes: Uint8Array, off: number): Uint8Array {
  return bytes.subarray(off + 4, off + 4 + u16(bytes, off));
}

function resetHint(p: Page): void {
  p.lastIns = -2;
  p.run = 0;
}

/** One leaf's worth of cursor output (copies), and where to continue. */
interface Batch {
  keys: Uint8Array[];
  values: Uint8Array[];
  /** MODE_RAW: the leaf copy and the offsets of the entries taken from it. */
  bytes: Uint8Array | null;
  offsets: number[];
  counted: number;
  /** Last key taken from the leaf (a copy), or null when nothing was taken. */
  last: Uint8Array | null;
  /** Where the next leaf starts (inclusive seek key), or null when the range or the tree ends here. */
  next: Uint8Array | null;
  done: boolean;
}

/**
 * A B+tree of byte-string keys and values over a `PageStore`.
 *
 * Concurrency: every mutation is synchronous, so a reader never sees half of one. The async methods await
 * only to load pages; after each load they restart their descent from the root, because anything may have
 * changed meanwhile (other callers' mutations, evictions, a flush relocating pages). Pages a call is waiting
 * on are pinned. Cursors copy one leaf at a time and re-seek after the last key they returned when the
 * modification counter moved. The only critical section split by an await is `flush()` (see there).
 */
/** What `check()` found besides "no violation". */
export interface BTreeCheckReport {
  /** Every page reachable from the root (dirty ones included). */
  pageNumbers: number[];
  /**
   * Pages of the last flushed tree that the live tree no longer uses (replaced by copy-on-write or dropped by a
   * merge): still part of the image on disk, so still in use, until the next `flush()` returns them in `freedPages`.
   */
  retiredPages: number[];
}

export class BTree {
  readonly pageSize: number;
  readonly maxKeyBytes: number;
  /** Values up to this size are accepted with any key (larger ones while key + value <= maxEntryBytes). */
  readonly maxValueBytes: number;
  /** Largest key.length + value.length of one entry. */
  readonly maxEntryBytes: number;

  readonly #store: PageStore;
  readonly #lim: Limits;
  readonly #cache: PageCache;
  readonly #readOnly: boolean;
  #rootNo = -1;
  #rootLevel = 0;
  #flushedRoot = -1;
  #modCount = 0;
  #treePages = -1;
  /** Pages allocated since the last flush snapshot: they may be written in place and freed at once. */
  #fresh = new Set<number>();
  /** Pages of the flushed tree that the current tree no longer uses (reported by the next flush). */
  #retired: number[] = [];
  /** Page reads in flight, by page number, with the flush count they started at (see #startRead). */
  readonly #loading = new Map<number, PageRead>();
  /**
   * Flushes started. A page the tree references changes on disk or is freed for reuse only through a flush (its
   * copy-on-write replaces it; pages merged away are reported by the next flush): an image read while this count
   * was unchanged is still the page's image (what read-ahead relies on, #readAhead).
   */
  #flushes = 0;
  #readsAhead = 0;
  readonly #pinSets = new Map<string, Page[]>();
  readonly #wantSiblings = new Set<string>();
  #flushChain: Promise<unknown> = Promise.resolve();
  // Scratch path for the synchronous mutations (never held across an await).
  readonly #path: Page[] = [];
  readonly #pathIdx: number[] = [];
  // Scratch of the slow paths: entry lists, and two page buffers that swap with the buffers of rewritten pages.
  readonly #lists: EntryList[] = [];
  readonly #compactList = new EntryList();
  readonly #scratch: Uint8Array[];
  readonly #entryScratch: Uint8Array;

  private constructor(store: PageStore, options: BTreeOptions | undefined) {
    if (store === null || typeof store !== 'object') throw new InvalidArgumentError('store must be a PageStore');
    const pageSize = store.pageSize;
    if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new InvalidArgumentError(`store.pageSize must be a power of two from 512 to 65536, got ${String(pageSize)}`);
    }
    const cacheSizeBytes = options?.cacheSizeBytes ?? DEFAULT_CACHE_BYTES;
    if (typeof cacheSizeBytes !== 'number' || !(cacheSizeBytes >= 0)) {
      throw new InvalidArgumentError('cacheSizeBytes must be a non-negative number');
    }
    this.#store = store;
    this.#lim = limitsFor(pageSize);
    this.pageSize = pageSize;
    this.maxKeyBytes = this.#lim.maxKeyBytes;
    this.maxValueBytes = this.#lim.maxValueBytes;
    this.maxEntryBytes = this.#lim.maxEntryBytes;
    this.#readOnly = options?.readOnly === true;
    this.#cache = new PageCache(Math.floor(cacheSizeBytes / pageSize));
    this.#scratch = [new Uint8Array(pageSize), new Uint8Array(pageSize)];
    this.#entryScratch = new Uint8Array(pageSize);
  }

  /** An empty tree (one empty leaf, in memory until `flush()`). */
  static create(store: PageStore, options?: BTreeOptions): BTree {
    if (options?.readOnly === true) throw new InvalidArgumentError('a new tree cannot be read-only');
    const t = new BTree(store, options);
    const no = t.#allocate();
    t.#createPage(no, encodePage(t.pageSize, true, 0, []), true, 0, 0, t.pageSize, 0);
    t.#rootNo = no;
    t.#treePages = 1;
    return t;
  }

  /** Opens the tree whose root page is `root` (reads and verifies the root). */
  static async open(store: PageStore, root: number, options?: BTreeOptions): Promise<BTree> {
    if (!Number.isInteger(root) || root < 0 || root > MAX_PAGE_NO) {
      throw new InvalidArgumentError(`root must be a page number, got ${String(root)}`);
    }
    const t = new BTree(store, options);
    const page = await t.#loadPinned(root);
    t.#cache.unpin(page);
    t.#rootNo = root;
    t.#rootLevel = page.level;
    t.#flushedRoot = root;
    return t;
  }

  /** Root page number of the last flush (or of `open`); -1 if never flushed. */
  get root(): number {
    return this.#flushedRoot;
  }

  get dirtyBytes(): number {
    return this.#cache.dirtyCount * this.pageSize;
  }

  get cachedBytes(): number {
    return this.#cache.size * this.pageSize;
  }

  /**
   * Pages of the last flush's tree that the tree has dropped since (merged away, or a replaced root): the next flush
   * returns them in `freedPages` beside the pages it relocates (at most one per dirty page). A caller that records
   * every freed page (e.g. for a snapshot that still reads the old tree) needs room for these too.
   */
  get retiredPageCount(): number {
    return this.#retired.length;
  }

  stats(): BTreeStats {
    const c = this.#cache;
    return {
      pages: this.#treePages,
      cachedPages: c.size,
      dirtyPages: c.dirtyCount,
      hits: c.hits,
      misses: c.misses,
      readAhead: this.#readsAhead,
      evictions: c.evictions,
      depth: this.#rootLevel + 1,
    };
  }

  // ---------------------------------------------------------------------------------------------- reads

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.#checkKey(key);
    let pins: Page[] | null = null;
    try {
      for (;;) {
        const cache = this.#cache;
        let p = cache.lookup(this.#rootNo);
        let missing = p === undefined ? this.#rootNo : -1;
        while (p !== undefined && !p.leaf) {
          const childNo = childAt(p, readBranchSearch(p, key));
          const c: Page | undefined = cache.lookup(childNo);
          if (c === undefined) {
            missing = childNo;
            break;
          }
          if (c.level !== p.level - 1) throw this.#levelError(c, p);
          p = c;
        }
        if (missing < 0 && p !== undefined) {
          const i = readLeafSearch(p, key);
          return i < 0 ? undefined : leafValueCopy(p, i);
        }
        (pins ??= []).push(await this.#loadPinned(missing));
      }
    } finally {
      if (pins !== null) for (const p of pins) this.#cache.unpin(p);
    }
  }

  /**
   * Synchronous lookup in the cached pages only (no I/O, no await): a VIEW of the value inside the cached leaf
   * page, `null` when the key is absent, or `undefined` when a page on the key's path is not cached (then use
   * `get()`, which loads it).
   *
   * THE VIEW IS NOT A COPY. It is valid only until the next mutation of this tree (put, delete, putCached,
   * deleteCached, bulkLoad; a flush may also relocate pages) or the next await, whichever comes first: after that
   * its bytes may belong to another entry or another page. Read it (or copy it) at once, and never write to it.
   *
   * `forUpdate`: the caller is about to change this key (e.g. to read the version it replaces). The lookup then
   * does not count towards building the pages' read search indexes, which the update would invalidate at once.
   */
  getCachedView(key: Uint8Array, forUpdate = false): Uint8Array | null | undefined {
    this.#checkKey(key);
    const cache = this.#cache;
    let p = cache.lookup(this.#rootNo);
    if (p === undefined) return undefined;
    // A lookup made to update the key uses the pages' search indexes but does not count towards building one: the
    // pages on its path are about to change, and an index built now would be thrown away by the update.
    buildOnRead = !forUpdate;
    try {
      while (!p.leaf) {
        const c: Page | undefined = cachedChild(cache, p, readBranchSearch(p, key));
        if (c === undefined) return undefined;
        if (c.level !== p.level - 1) throw this.#levelError(c, p);
        p = c;
      }
      const i = readLeafSearch(p, key);
      if (i < 0) return null;
      const b = p.buf;
      const off = foundOffset >= 0 ? foundOffset : u16(b, HEADER_BYTES + SLOT_BYTES * i);
      const start = off + LEAF_ENTRY_HEADER + u16(b, off);
      return b.subarray(start, start + u16(b, off + 2));
    } finally {
      buildOnRead = true;
    }
  }

  /**
   * The entries of `range` one leaf at a time: each batch holds the keys and values taken from one leaf (in the
   * range's order, never empty), as views into one private copy of that leaf (valid indefinitely; together they
   * keep the copy alive). Consistency as for `entries()`: if the tree changed while the caller held a batch, the
   * next batch starts after the last key of that batch. Lets a caller handle a leaf's entries synchronously
   * instead of awaiting each one.
   */
  entryBatches(range?: KeyRange): AsyncIterableIterator<EntryBatch> {
    return this.#batches(toBounds(range), MODE_ENTRIES) as AsyncIterableIterator<EntryBatch>;
  }

  /**
   * As `entryBatches`, but each leaf's entries come as offsets into one private copy of the leaf (`EntryRun`)
   * instead of two views per entry: for scans that decode every entry anyway (the engine's `list()`).
   */
  entryRuns(range?: KeyRange): AsyncIterableIterator<EntryRun> {
    return this.#batches(toBounds(range), MODE_RAW) as AsyncIterableIterator<EntryRun>;
  }

  async *#batches(b: Bounds, mode: number): AsyncGenerator<EntryBatch | EntryRun> {
    if (b.empty) return;
    let remaining = b.limit;
    let seek = b.reverse ? b.hi : b.lo;
    let strict = b.reverse ? !b.hiInclusive : !b.loInclusive;
    const pins: Page[] = [];
    const scan: ScanState = { loads: 0 };
    try {
      while (remaining > 0) {
        const batch = await this.#readBatch(b, seek, strict, mode, remaining, pins, scan);
        for (const p of pins) this.#cache.unpin(p);
        pins.length = 0;
        const n = batch.counted;
        remaining -= n;
        let changed = false;
        if (n > 0) {
          const mod = this.#modCount;
          yield mode === MODE_RAW ? { bytes: batch.bytes!, offsets: batch.offsets } : { keys: batch.keys, values: batch.values };
          changed = this.#modCount !== mod;
        }
        if (batch.done) return;
        if (changed) {
          // The tree changed while the caller held the batch: continue after its last key.
          seek = mode === MODE_RAW ? rawKeyAt(batch.bytes!, batch.offsets[n - 1]!) : batch.last;
          strict = true;
        } else {
          seek = batch.next;
          strict = b.reverse;
        }
      }
    } finally {
      for (const p of pins) this.#cache.unpin(p);
    }
  }

  entries(range?: KeyRange): AsyncIterableIterator<[key: Uint8Array, value: Uint8Array]> {
    return this.#iterate(toBounds(range), MODE_ENTRIES) as AsyncIterableIterator<[Uint8Array, Uint8Array]>;
  }

  keys(range?: KeyRange): AsyncIterableIterator<Uint8Array> {
    return this.#iterate(toBounds(range), MODE_KEYS) as AsyncIterableIterator<Uint8Array>;
  }

  async count(range?: KeyRange): Promise<number> {
    const b = toBounds(range);
    if (b.empty) return 0;
    let n = 0;
    let seek = b.reverse ? b.hi : b.lo;
    let strict = b.reverse ? !b.hiInclusive : !b.loInclusive;
    let pins: Page[] | null = null;
    const scan: ScanState = { loads: 0 };
    try {
      while (n < b.limit) {
        const batch = await this.#readBatch(b, seek, strict, MODE_COUNT, b.limit - n, (pins ??= []), scan);
        for (const p of pins) this.#cache.unpin(p);
        pins.length = 0;
        n += batch.counted;
        if (batch.done) break;
        seek = batch.next;
        strict = b.reverse;
      }
      return n;
    } finally {
      if (pins !== null) for (const p of pins) this.#cache.unpin(p);
    }
  }

  async *#iterate(b: Bounds, mode: number): AsyncGenerator<Uint8Array | [Uint8Array, Uint8Array]> {
    if (b.empty) return;
    let remaining = b.limit;
    let seek = b.reverse ? b.hi : b.lo;
    let strict = b.reverse ? !b.hiInclusive : !b.loInclusive;
    const pins: Page[] = [];
    const scan: ScanState = { loads: 0 };
    try {
      while (remaining > 0) {
        const batch = await this.#readBatch(b, seek, strict, mode, remaining, pins, scan);
        for (const p of pins) this.#cache.unpin(p);
        pins.length = 0;
        const mod = this.#modCount;
        const n = batch.keys.length;
        let changed = false;
        for (let i = 0; i < n; i++) {
          const k = batch.keys[i]!;
          yield mode === MODE_ENTRIES ? [k, batch.values[i]!] : k;
          remaining--;
          if (this.#modCount !== mod && i < n - 1) {
            // The tree changed while the caller held our result: continue after the last key we returned.
            changed = true;
            seek = k;
            strict = true;
            break;
          }
        }
        if (changed) continue;
        if (batch.done) return;
        if (this.#modCount !== mod) {
          seek = batch.last;
          strict = true;
        } else {
          seek = batch.next;
          strict = b.reverse;
        }
      }
    } finally {
      for (const p of pins) this.#cache.unpin(p);
    }
  }

  /** Reads the next non-empty leaf slice of the range from `seek`, loading (and pinning into `pins`) as needed. */
  async #readBatch(
    b: Bounds,
    seek: Uint8Array | null,
    strict: boolean,
    mode: number,
    max: number,
    pins: Page[],
    scan: ScanState,
  ): Promise<Batch> {
    for (;;) {
      const r = this.#readBatchCached(b, seek, strict, mode, max);
      if (typeof r !== 'number') return r;
      // A scan that has loaded a leaf before reads the next leaves of this parent ahead (1, 2, 4, … READ_AHEAD_PAGES):
      // a scan of a tree not in the cache waited for each leaf in turn (a list of 200,000 keys after a reopen ran at
      // about 146,000 entries/s against 850,000 cached).
      if (missParent !== null && ++scan.loads > 1) this.#readAhead(missParent, missIndex, b, Math.min(READ_AHEAD_PAGES, 2 ** (scan.loads - 2)));
      pins.push(await this.#loadPinned(r));
    }
  }

  /**
   * Starts reads of up to `want` children of branch `parent` after child `i` in the scan's direction (before it when
   * reversed) that are not cached or being read, stopping at the first one outside the range. They are not awaited:
   * each goes into the cache when it arrives (unpinned, so the cache may evict it again), if the tree still
   * references it there (`parent` unchanged and cached) and no flush started since the read did (see #flushes);
   * else it is dropped. A failed read is dropped too: the scan's own read of that page reports the error.
   */
  #readAhead(parent: Page, i: number, b: Bounds, want: number): void {
    const cache = this.#cache;
    const n = Math.min(want, cache.capacity >> 3);
    const buf = parent.buf;
    const version = parent.version;
    for (let k = 1; k <= n; k++) {
      const j = b.reverse ? i - k : i + k;
      if (j < 0 || j >= parent.count) return;
      if (!b.reverse && b.hi !== null) {
        // Child j holds keys from its separator on.
        const off = u16(buf, HEADER_BYTES + SLOT_BYTES * j);
        const c = compareRange(buf, off + BRANCH_ENTRY_HEADER, u16(buf, off + 4), b.hi, 0, b.hi.length);
        if (c > 0 || (c === 0 && !b.hiInclusive)) return;
      } else if (b.reverse && b.lo !== null) {
        // Child j holds keys below the separator of child j + 1.
        const off = u16(buf, HEADER_BYTES + SLOT_BYTES * (j + 1));
        if (compareRange(buf, off + BRANCH_ENTRY_HEADER, u16(buf, off + 4), b.lo, 0, b.lo.length) <= 0) return;
      }
      const no = childAt(parent, j);
      if (cache.peek(no) !== undefined) continue;
      const running = this.#loading.get(no);
      if (running !== undefined && running.flushes === this.#flushes) continue;
      cache.misses++;
      this.#readsAhead++;
      const read = this.#startRead(no);
      read.read.then(
        (image) => {
          if (this.#flushes !== read.flushes || cache.peek(no) !== undefined) return;
          if (!parent.cached || parent.version !== version || childAt(parent, j) !== no) return;
          try {
            const info = validatePage(no, image, this.#lim, true);
            if (info.level !== parent.level - 1) return;
            const p = new Page(no, image, info.leaf, info.level, info.count, info.heapStart, info.used);
            buildSearchIndex(p);
            cache.insert(p);
          } catch {
            // A damaged page: the scan's own read of it reports the error.
          }
        },
        () => undefined,
      );
    }
  }

  /** Reads page `no` from the store, registered in #loading until it settles. */
  #startRead(no: number): PageRead {
    const entry: PageRead = { read: this.#store.read(no), flushes: this.#flushes };
    this.#loading.set(no, entry);
    const done = (): void => {
      if (this.#loading.get(no) === entry) this.#loading.delete(no);
    };
    entry.read.then(done, done);
    return entry;
  }

  /** Synchronous part of #readBatch: a batch, or the number of a page that must be loaded first. */
  #readBatchCached(
    b: Bounds,
    seekIn: Uint8Array | null,
    strictIn: boolean,
    mode: number,
    max: number,
  ): Batch | number {
    const cache = this.#cache;
    let seek = seekIn;
    let strict = strictIn;
    const batch: Batch = { keys: [], values: [], bytes: null, offsets: [], counted: 0, last: null, next: null, done: false };
    for (;;) {
      let p = cache.lookup(this.#rootNo);
      if (p === undefined) {
        missParent = null;
        return this.#rootNo;
      }
      // Deepest neighbouring separator: next leaf starts at `sep` (forward) / previous leaf ends before `sep`.
      let sepPage: Page | null = null;
      let sepIdx = 0;
      while (!p.leaf) {
        let i: number;
        if (!b.reverse) {
          i = seek === null ? 0 : branchSearch(p, seek);
          if (i + 1 < p.count) {
            sepPage = p;
            sepIdx = i + 1;
          }
        } else {
          i = seek === null ? p.count - 1 : strict ? branchSearchBefore(p, seek) : branchSearch(p, seek);
          if (i >= 1) {
            sepPage = p;
            sepIdx = i;
          }
        }
        const childNo = childAt(p, i);
        const c: Page | undefined = cache.lookup(childNo);
        if (c === undefined) {
          missParent = p.level === 1 ? p : null;
          missIndex = i;
          return childNo;
        }
        if (c.level !== p.level - 1) throw this.#levelError(c, p);
        p = c;
      }
      const buf = p.buf;
      // One copy of the leaf per batch; the keys and values handed out are views of it (a slice per entry costs
      // two allocations each and dominated scans).
      const copy = mode === MODE_COUNT ? buf : buf.slice();
      batch.bytes = copy;
      if (!b.reverse) {
        let i = seek === null ? 0 : leafLowerBound(p, seek, strict);
        for (; i < p.count && batch.counted < max; i++) {
          const off = u16(buf, HEADER_BYTES + SLOT_BYTES * i);
          const kl = u16(buf, off);
          if (b.hi !== null) {
            const c = compareRange(buf, off + 4, kl, b.hi, 0, b.hi.length);
            if (c > 0 || (c === 0 && !b.hiInclusive)) {
              batch.done = true;
              break;
            }
          }
          this.#take(batch, copy, off, kl, mode);
        }
        if (batch.counted >= max) batch.done = true;
        if (!batch.done) {
          if (sepPage === null) batch.done = true;
          else batch.next = branchKeyCopy(sepPage, sepIdx);
        }
      } else {
        let i = (seek === null ? p.count : leafLowerBound(p, seek, !strict)) - 1;
        for (; i >= 0 && batch.counted < max; i--) {
          const off = u16(buf, HEADER_BYTES + SLOT_BYTES * i);
          const kl = u16(buf, off);
          if (b.lo !== null) {
            const c = compareRange(buf, off + 4, kl, b.lo, 0, b.lo.length);
            if (c < 0 || (c === 0 && !b.loInclusive)) {
              batch.done = true;
              break;
            }
          }
          this.#take(batch, copy, off, kl, mode);
        }
        if (batch.counted >= max) batch.done = true;
        if (!batch.done) {
          if (sepPage === null) batch.done = true;
          else batch.next = branchKeyCopy(sepPage, sepIdx);
        }
      }
      if (batch.counted > 0 || batch.done) return batch;
      // Nothing in this leaf on our side of the seek key: go to the neighbouring leaf.
      seek = batch.next;
      strict = b.reverse;
      batch.next = null;
    }
  }

  #take(batch: Batch, buf: Uint8Array, off: number, kl: number, mode: number): void {
    batch.counted++;
    if (mode === MODE_COUNT) {
      batch.last = null;
      return;
    }
    if (mode === MODE_RAW) {
      // No views: the last key's view is made once per batch (rawKeyAt in #batches), only if the tree changed.
      batch.offsets.push(off);
      return;
    }
    const key = buf.subarray(off + 4, off + 4 + kl);
    batch.keys.push(key);
    batch.last = key;
    if (mode === MODE_ENTRIES) {
      const vl = u16(buf, off + 2);
      batch.values.push(buf.subarray(off + 4 + kl, off + 4 + kl + vl));
    }
  }

  // ------------------------------------------------------------------------------------------ mutations

  async put(key: Uint8Array, value: Uint8Array): Promise<Uint8Array | undefined> {
    this.#checkWritable();
    this.#checkKey(key);
    this.#checkValue(key, value);
    for (;;) {
      const r = this.putCached(key, value);
      if (r.done) return r.previous;
      await this.prefetch(key);
    }
  }

  async delete(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.#checkWritable();
    this.#checkKey(key);
    for (;;) {
      const r = this.deleteCached(key);
      if (r.done) return r.previous;
      await this.prefetch(key);
    }
  }

  /**
   * Loads the root-to-leaf path of `key` (and, after a cached mutation of this key failed for a missing
   * sibling, the siblings along the path) and pins it until the next putCached/deleteCached of the key or
   * the next prefetch of it.
   */
  async prefetch(key: Uint8Array): Promise<void> {
    this.#checkKey(key);
    const ks = keyString(key);
    this.#releasePins(ks);
    const siblings = this.#wantSiblings.delete(ks);
    const loaded: Page[] = [];
    try {
      for (;;) {
        const missing = this.#prefetchCached(key, siblings);
        if (missing < 0) break;
        loaded.push(await this.#loadPinned(missing));
      }
      // Pin what the cached mutation will need: the path, and the siblings if asked.
      const set: Page[] = [];
      const cache = this.#cache;
      let p = cache.peek(this.#rootNo)!;
      cache.pin(p);
      set.push(p);
      while (!p.leaf) {
        const i = branchSearch(p, key);
        if (siblings && p.count > 1) {
          const s = cache.peek(childAt(p, i > 0 ? i - 1 : i + 1))!;
          cache.pin(s);
          set.push(s);
        }
        p = cache.peek(childAt(p, i))!;
        cache.pin(p);
        set.push(p);
      }
      this.#releasePins(ks);
      this.#pinSets.set(ks, set);
      if (this.#pinSets.size > MAX_PIN_SETS) {
        const oldest = this.#pinSets.keys().next().value!;
        this.#releasePins(oldest);
      }
    } finally {
      for (const p of loaded) this.#cache.unpin(p);
    }
  }

  /** -1 when everything prefetch wants is cached, else a missing page number. */
  #prefetchCached(key: Uint8Array, siblings: boolean): number {
    const cache = this.#cache;
    let p = cache.lookup(this.#rootNo);
    if (p === undefined) return this.#rootNo;
    while (!p.leaf) {
      const i = branchSearch(p, key);
      if (siblings && p.count > 1) {
        const sibNo = childAt(p, i > 0 ? i - 1 : i + 1);
        const s = cache.lookup(sibNo);
        if (s === undefined) return sibNo;
        if (s.level !== p.level - 1) throw this.#levelError(s, p);
      }
      const childNo = childAt(p, i);
      const c: Page | undefined = cache.lookup(childNo);
      if (c === undefined) return childNo;
      if (c.level !== p.level - 1) throw this.#levelError(c, p);
      p = c;
    }
    return -1;
  }

  putCached(key: Uint8Array, value: Uint8Array): CachedResult {
    this.#checkWritable();
    this.#checkKey(key);
    this.#checkValue(key, value);
    const r = this.#mutate(key, value);
    // Unpin only after the mutation: unpinning may evict at once.
    if (this.#pinSets.size > 0) this.#releasePins(keyString(key));
    return r;
  }

  deleteCached(key: Uint8Array): CachedResult {
    this.#checkWritable();
    this.#checkKey(key);
    const r = this.#mutate(key, null);
    if (this.#pinSets.size > 0) this.#releasePins(keyString(key));
    return r;
  }

  /** put (value !== null) or delete (value === null) using cached pages only; changes nothing if one is missing. */
  #mutate(key: Uint8Array, value: Uint8Array | null): CachedResult {
    const cache = this.#cache;
    const path = this.#path;
    const idx = this.#pathIdx;
    let p = cache.lookup(this.#rootNo);
    if (p === undefined) return { done: false };
    let d = 0;
    while (!p.leaf) {
      const i = branchSearch(p, key);
      path[d] = p;
      idx[d] = i;
      d++;
      const c: Page | undefined = cache.lookup(childAt(p, i));
      if (c === undefined) return { done: false };
      if (c.level !== p.level - 1) throw this.#levelError(c, p);
      p = c;
    }
    path[d] = p;
    const leaf = p;
    const lim = this.#lim;
    const pos = leafSearch(leaf, key);
    let previous: Uint8Array | undefined;
    if (value !== null) {
      const need = SLOT_BYTES + LEAF_ENTRY_HEADER + key.length + value.length;
      if (pos >= 0) {
        const off = u16(leaf.buf, HEADER_BYTES + SLOT_BYTES * pos);
        const vl = u16(leaf.buf, off + 2);
        const vOff = off + 4 + key.length;
        previous = leaf.buf.slice(vOff, vOff + vl);
        if (vl === value.length) {
          this.#own(leaf);
          leaf.buf.set(value, vOff);
          this.#committed(d);
          return { done: true, previous };
        }
        const newUsed = leaf.used - (SLOT_BYTES + LEAF_ENTRY_HEADER + key.length + vl) + need;
        // Same rule as #rebuild: a page under the minimum fill is rebuilt only when it shrinks (only pages on
        // the right edge may be under it, see check()).
        if (newUsed <= lim.capacity && (d === 0 || newUsed >= lim.minFill || newUsed >= leaf.used)) {
          this.#removeAt(leaf, pos);
          this.#leafInsert(leaf, pos, key, value);
          this.#committed(d);
          return { done: true, previous };
        }
        return this.#rebuildOrFail(d, K_REPLACE, pos, key, value, previous);
      }
      const ins = -pos - 1;
      if (leaf.used + need <= lim.capacity) {
        noteInsert(leaf, ins);
        this.#leafInsert(leaf, ins, key, value);
        this.#committed(d);
        return { done: true, previous: undefined };
      }
      return this.#rebuildOrFail(d, K_INSERT, ins, key, value, undefined);
    }
    if (pos < 0) return { done: true, previous: undefined };
    const off = u16(leaf.buf, HEADER_BYTES + SLOT_BYTES * pos);
    const vl = u16(leaf.buf, off + 2);
    previous = leaf.buf.slice(off + 4 + key.length, off + 4 + key.length + vl);
    const newUsed = leaf.used - (SLOT_BYTES + LEAF_ENTRY_HEADER + key.length + vl);
    if (d === 0 || newUsed >= lim.minFill) {
      noteRemove(leaf, pos);
      this.#removeAt(leaf, pos);
      this.#committed(d);
      return { done: true, previous };
    }
    return this.#rebuildOrFail(d, K_REMOVE, pos, key, EMPTY, previous);
  }

  #rebuildOrFail(d: number, kind: number, pos: number, key: Uint8Array, value: Uint8Array, previous: Uint8Array | undefined): CachedResult {
    const missing = this.#rebuild(d, kind, pos, key, value);
    if (missing >= 0) {
      // The next prefetch of this key also loads the siblings along its path.
      if (this.#wantSiblings.size >= MAX_PIN_SETS) this.#wantSiblings.clear();
      this.#wantSiblings.add(keyString(key));
      return { done: false };
    }
    return { done: true, previous };
  }

  /** Marks the path 0..d dirty after an in-place leaf change. */
  #committed(d: number): void {
    const path = this.#path;
    for (let i = 0; i <= d; i++) this.#cache.markDirty(path[i]!);
    this.#modCount++;
  }

  /** The i-th reusable entry list of the slow path. */
  #list(i: number, leaf: boolean): EntryList {
    const lists = this.#lists;
    while (lists.length <= i) lists.push(new EntryList());
    return lists[i]!.reset(leaf);
  }

  /**
   * The slow path: the leaf at path[leafDepth] gets `key`/`value` inserted at `pos` (K_INSERT), its entry `pos`
   * replaced (K_REPLACE) or removed (K_REMOVE), and then overflows or underflows. Splits, merges and
   * redistributes up the path as needed; the first ancestor that can absorb the change (a separator inserted,
   * removed or replaced) is edited in place, without rewriting it.
   *
   * Plans everything first, reading pages only (entry lists refer to the old page bytes), and applies the plan
   * only if every sibling it needed was cached. Returns -1 when applied, else the number of the missing page
   * (nothing changed). Applying is synchronous and cannot fail halfway, so a mutation is atomic.
   */
  #rebuild(leafDepth: number, kind: number, pos: number, key: Uint8Array, value: Uint8Array): number {
    const lim = this.#lim;
    const cache = this.#cache;
    const path = this.#path;
    const idx = this.#pathIdx;
    const steps: Step[] = [];
    const allocated: number[] = [];
    let lists = 0;
    // The leaf's new content. newPos: index of an inserted entry (drives the biased splits), else -1.
    const leafNode = path[leafDepth]!;
    let list = this.#list(lists++, true);
    list.addPage(leafNode.buf, 0, pos);
    let newPos = -1;
    if (kind !== K_REMOVE) {
      // The new entry, serialized into scratch (writePage copies it; separators are copies).
      const ne = this.#entryScratch;
      setU16(ne, 0, key.length);
      setU16(ne, 2, value.length);
      ne.set(key, LEAF_ENTRY_HEADER);
      ne.set(value, LEAF_ENTRY_HEADER + key.length);
      if (kind === K_INSERT) newPos = list.n;
      list.add(ne, 0, LEAF_ENTRY_HEADER + key.length + value.length, 0);
    }
    list.addPage(leafNode.buf, kind === K_INSERT ? pos : pos + 1, leafNode.count);
    // The in-place edit of the topmost changed page, if the change stops below the root's rebuild.
    let topOp = TOP_NONE;
    let topPos = 0;
    let topKey: Uint8Array = EMPTY;
    let topChild = 0;
    let d = leafDepth;
    try {
      for (;;) {
        const node = path[d]!;
        const leaf = node.leaf;
        const size = list.bytes(0, list.n);
        let op: number;
        let opPos: number;
        let opKey: Uint8Array = EMPTY;
        let opChild = 0;
        if (size > lim.capacity) {
          let policy = SPLIT_EVEN;
          let run = 0;
          if (newPos >= 0) {
            run = runAfter(node, newPos);
            if (newPos === list.n - 1 && this.#onRightEdge(d)) policy = SPLIT_APPEND;
            else if (run >= SEQ_RUN) policy = SPLIT_ASC;
            else if (run <= -SEQ_RUN) policy = SPLIT_DESC;
          }
          const s = splitPoint(list, policy, newPos, lim.capacity, lim.minFill);
          const rightNo = this.#allocate();
          allocated.push(rightNo);
          const sep = leaf ? shortestSeparator(list.key(s - 1), list.key(s)) : list.key(s).slice();
          // An append split of a leaf leaves the old page as it is.
          const keepLeft = leaf && newPos === s && s === list.n - 1;
          steps.push({ kind: ST_SPLIT, page: node, other: null, list, s, keepLeft, newNo: rightNo, sep, child: 0, newPos, run });
          if (d === 0) {
            const rootNo = this.#allocate();
            allocated.push(rootNo);
            steps.push({ kind: ST_NEWROOT, page: node, other: null, list: this.#list(lists++, false), s: 0, keepLeft: false, newNo: rootNo, sep, child: rightNo });
            break;
          }
          op = TOP_INSERT;
          opPos = idx[d - 1]! + 1;
          opKey = sep;
          opChild = rightNo;
        } else if (d > 0 && size < lim.minFill && size < node.used) {
          // Under the minimum fill: merge with a sibling, or move entries over from it.
          const parent = path[d - 1]!;
          const pi = idx[d - 1]!;
          if (parent.count < 2) throw new CorruptionError(`btree page ${parent.no}`, 'branch with one child');
          const si = pi > 0 ? pi - 1 : pi + 1;
          const sibNo = childAt(parent, si);
          const sib = cache.lookup(sibNo);
          if (sib === undefined) {
            for (const no of allocated) this.#freeFresh(no);
            this.#clearLists(lists);
            return sibNo;
          }
          if (sib.level !== node.level) throw this.#levelError(sib, parent);
          const ri = Math.max(pi, si);
          const comb = this.#list(lists++, leaf);
          // For branches the parent's separator comes down as the key of the right page's first entry.
          const pOff = u16(parent.buf, HEADER_BYTES + SLOT_BYTES * ri);
          const pkOff = pOff + BRANCH_ENTRY_HEADER;
          const pkLen = u16(parent.buf, pOff + 4);
          if (si < pi) {
            comb.addPage(sib.buf, 0, sib.count);
            if (leaf) comb.addList(list, 0, list.n);
            else {
              comb.add(parent.buf, pkOff, pkLen, list.childs[0]!);
              comb.addList(list, 1, list.n);
            }
          } else {
            comb.addList(list, 0, list.n);
            if (leaf) comb.addPage(sib.buf, 0, sib.count);
            else {
              comb.add(parent.buf, pkOff, pkLen, childAt(sib, 0));
              comb.addPage(sib.buf, 1, sib.count);
            }
          }
          const leftPage = si < pi ? sib : node;
          const rightPage = si < pi ? node : sib;
          opPos = ri;
          if (comb.bytes(0, comb.n) <= lim.capacity) {
            steps.push({ kind: ST_MERGE, page: leftPage, other: rightPage, list: comb, s: comb.n, keepLeft: false, newNo: -1, sep: EMPTY, child: 0 });
            op = TOP_REMOVE;
          } else {
            const s = splitPoint(comb, SPLIT_EVEN, -1, lim.capacity, lim.minFill);
            const sep = leaf ? shortestSeparator(comb.key(s - 1), comb.key(s)) : comb.key(s).slice();
            steps.push({ kind: ST_REDIST, page: leftPage, other: rightPage, list: comb, s, keepLeft: false, newNo: -1, sep, child: 0 });
            op = TOP_REPLACE;
            opKey = sep;
          }
        } else {
          if (d === 0 && !leaf && list.n === 1) {
            // A root branch with one child: the child becomes the root.
            steps.push({ kind: ST_COLLAPSE, page: node, other: null, list, s: 0, keepLeft: false, newNo: list.childs[0]!, sep: EMPTY, child: 0 });
          } else {
            steps.push({ kind: ST_REWRITE, page: node, other: null, list, s: list.n, keepLeft: false, newNo: -1, sep: EMPTY, child: 0 });
          }
          break;
        }
        // The parent absorbs the change in place when it stays within its bounds; else it is rebuilt too.
        const parent = path[d - 1]!;
        const parentIsRoot = d - 1 === 0;
        let newUsed = parent.used;
        let newCount = parent.count;
        let oldKeyLen = 0;
        if (op !== TOP_INSERT) oldKeyLen = u16(parent.buf, u16(parent.buf, HEADER_BYTES + SLOT_BYTES * opPos) + 4);
        if (op === TOP_INSERT) {
          newUsed += SLOT_BYTES + BRANCH_ENTRY_HEADER + opKey.length;
          newCount++;
        } else if (op === TOP_REMOVE) {
          newUsed -= SLOT_BYTES + BRANCH_ENTRY_HEADER + oldKeyLen;
          newCount--;
        } else {
          newUsed += opKey.length - oldKeyLen;
        }
        d--;
        if (
          newUsed <= lim.capacity &&
          newCount >= 2 &&
          (parentIsRoot || newUsed >= lim.minFill || newUsed >= parent.used)
        ) {
          topOp = op;
          topPos = opPos;
          topKey = opKey;
          topChild = opChild;
          break;
        }
        const next = this.#list(lists++, false);
        if (op === TOP_INSERT) {
          next.addPage(parent.buf, 0, opPos);
          newPos = next.n;
          next.add(opKey, 0, opKey.length, opChild);
          next.addPage(parent.buf, opPos, parent.count);
        } else if (op === TOP_REMOVE) {
          next.addPage(parent.buf, 0, opPos);
          next.addPage(parent.buf, opPos + 1, parent.count);
          newPos = -1;
        } else {
          next.addPage(parent.buf, 0, opPos);
          next.add(opKey, 0, opKey.length, childAt(parent, opPos));
          next.addPage(parent.buf, opPos + 1, parent.count);
          newPos = -1;
        }
        list = next;
      }
    } catch (err) {
      for (const no of allocated) this.#freeFresh(no);
      this.#clearLists(lists);
      throw err;
    }
    const dropped = this.#apply(d, steps, topOp, topPos, topKey, topChild);
    if (this.#treePages >= 0) this.#treePages += allocated.length - dropped;
    this.#clearLists(lists);
    this.#modCount++;
    return -1;
  }

  /** Whether path[d] is the last page of its level (every page above it on the path is its parent's last child). */
  #onRightEdge(d: number): boolean {
    for (let i = 0; i < d; i++) if (this.#pathIdx[i] !== this.#path[i]!.count - 1) return false;
    return true;
  }

  #clearLists(n: number): void {
    for (let i = 0; i < n; i++) this.#lists[i]!.clear();
  }

  /**
   * Applies a plan of #rebuild: `steps` bottom-up, then the in-place edit of path[top] (if any). Each step builds
   * all of its images before installing any (they are built from the step's pages), and no step reads pages of
   * a step below it, so installing as we go is safe.
   */
  #apply(top: number, steps: Step[], topOp: number, topPos: number, topKey: Uint8Array, topChild: number): number {
    const cache = this.#cache;
    const pageSize = this.pageSize;
    const path = this.#path;
    // Existing pages that change become dirty first: a dirty page cannot be evicted by the inserts below.
    for (let i = 0; i <= top; i++) cache.markDirty(path[i]!);
    for (const st of steps) {
      if (st.kind === ST_SPLIT ? !st.keepLeft : st.kind !== ST_NEWROOT && st.kind !== ST_COLLAPSE) cache.markDirty(st.page);
      if (st.kind === ST_REDIST) cache.markDirty(st.other!);
    }
    let dropped = 0;
    for (const st of steps) {
      const l = st.list;
      const p = st.page;
      switch (st.kind) {
        case ST_SPLIT: {
          const rb = new Uint8Array(pageSize);
          const rh = writePage(rb, p.level, l, st.s, l.n);
          if (!st.keepLeft) this.#install(p, 0, writePage(this.#scratch[0]!, p.level, l, 0, st.s), st.s, l.bytes(0, st.s));
          const rp = this.#createPage(st.newNo, rb, p.leaf, p.level, l.n - st.s, rh, l.bytes(st.s, l.n));
          resetHint(p);
          const at = st.newPos!;
          if (at >= 0) {
            const target = at < st.s ? p : rp;
            target.lastIns = at < st.s ? at : at - st.s;
            target.run = st.run!;
          }
          break;
        }
        case ST_REWRITE:
        case ST_MERGE:
          resetHint(p);
          this.#install(p, 0, writePage(this.#scratch[0]!, p.level, l, 0, l.n), l.n, l.bytes(0, l.n));
          if (st.other !== null) {
            this.#dropPage(st.other);
            dropped++;
          }
          break;
        case ST_REDIST: {
          const lh = writePage(this.#scratch[0]!, p.level, l, 0, st.s);
          const rh = writePage(this.#scratch[1]!, p.level, l, st.s, l.n);
          this.#install(p, 0, lh, st.s, l.bytes(0, st.s));
          this.#install(st.other!, 1, rh, l.n - st.s, l.bytes(st.s, l.n));
          resetHint(p);
          resetHint(st.other!);
          break;
        }
        case ST_NEWROOT: {
          // The old root split into itself and st.child.
          l.add(EMPTY, 0, 0, p.no);
          l.add(st.sep, 0, st.sep.length, st.child);
          const b = new Uint8Array(pageSize);
          const h = writePage(b, p.level + 1, l, 0, 2);
          this.#createPage(st.newNo, b, false, p.level + 1, 2, h, l.bytes(0, 2));
          this.#rootNo = st.newNo;
          this.#rootLevel = p.level + 1;
          break;
        }
        case ST_COLLAPSE:
          this.#rootNo = st.newNo;
          this.#rootLevel = p.level - 1;
          this.#dropPage(p);
          dropped++;
          break;
      }
    }
    if (topOp !== TOP_NONE) {
      const p = path[top]!;
      if (topOp === TOP_INSERT) {
        noteInsert(p, topPos);
        this.#branchInsert(p, topPos, topKey, topChild);
      } else if (topOp === TOP_REMOVE) {
        noteRemove(p, topPos);
        this.#removeAt(p, topPos);
      } else {
        this.#branchReplaceKey(p, topPos, topKey);
      }
    }
    return dropped;
  }

  /** Makes scratch buffer `si` (holding a freshly written image) the buffer of `p`; its old buffer becomes scratch. */
  #install(p: Page, si: number, heapStart: number, count: number, used: number): void {
    const img = this.#scratch[si]!;
    // A buffer lent to a flush's write is the store's until the write resolves: it cannot become scratch.
    this.#scratch[si] = p.lent ? new Uint8Array(this.pageSize) : p.buf;
    p.lent = false;
    p.buf = img;
    p.count = count;
    p.heapStart = heapStart;
    p.used = used;
  }

  /** Reserves `esz` heap bytes and a slot at `pos` (compacting first if needed); returns the entry's offset. */
  #makeRoom(p: Page, pos: number, esz: number): number {
    this.#own(p);
    if (p.heapStart - (HEADER_BYTES + SLOT_BYTES * p.count) < esz + SLOT_BYTES) this.#compact(p);
    const b = p.buf;
    const slotEnd = HEADER_BYTES + SLOT_BYTES * p.count;
    const off = p.heapStart - esz;
    const sp = HEADER_BYTES + SLOT_BYTES * pos;
    if (sp < slotEnd) b.copyWithin(sp + SLOT_BYTES, sp, slotEnd);
    setU16(b, sp, off);
    p.count++;
    p.heapStart = off;
    p.used += esz + SLOT_BYTES;
    setU16(b, OFF_COUNT, p.count);
    setU32(b, OFF_HEAP_START, off);
    return off;
  }

  #leafInsert(p: Page, pos: number, key: Uint8Array, value: Uint8Array): void {
    const off = this.#makeRoom(p, pos, LEAF_ENTRY_HEADER + key.length + value.length);
    const b = p.buf;
    setU16(b, off, key.length);
    setU16(b, off + 2, value.length);
    copyBytes(b, off + 4, key, 0, key.length);
    copyBytes(b, off + 4 + key.length, value, 0, value.length);
  }

  #branchInsert(p: Page, pos: number, key: Uint8Array, child: number): void {
    const off = this.#makeRoom(p, pos, BRANCH_ENTRY_HEADER + key.length);
    const b = p.buf;
    setU32(b, off, child);
    setU16(b, off + 4, key.length);
    copyBytes(b, off + BRANCH_ENTRY_HEADER, key, 0, key.length);
  }

  /** Replaces the key of branch entry `pos` (>= 1), keeping its child. The caller checked that it fits. */
  #branchReplaceKey(p: Page, pos: number, key: Uint8Array): void {
    this.#own(p);
    const b = p.buf;
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * pos);
    if (u16(b, off + 4) === key.length) {
        copyBytes(b, off + BRANCH_ENTRY_HEADER, key, 0, key.length);
      return;
    }
    const child = u32(b, off);
    this.#removeAt(p, pos);
    this.#branchInsert(p, pos, key, child);
  }

  /** Removes entry `pos` of a leaf or branch; its bytes stay as a hole unless they were at the heap's start. */
  #removeAt(p: Page, pos: number): void {
    this.#own(p);
    const b = p.buf;
    const sp = HEADER_BYTES + SLOT_BYTES * pos;
    const off = u16(b, sp);
    const esz = p.leaf ? LEAF_ENTRY_HEADER + u16(b, off) + u16(b, off + 2) : BRANCH_ENTRY_HEADER + u16(b, off + 4);
    b.copyWithin(sp, sp + SLOT_BYTES, HEADER_BYTES + SLOT_BYTES * p.count);
    p.count--;
    p.used -= esz + SLOT_BYTES;
    if (off === p.heapStart) {
      p.heapStart += esz;
      setU32(b, OFF_HEAP_START, p.heapStart);
    }
    setU16(b, OFF_COUNT, p.count);
  }

  /** Before an in-place change: a page whose buffer is lent to a flush's write gets a copy of its own. */
  #own(p: Page): void {
    if (p.lent) {
      p.buf = p.buf.slice();
      p.lent = false;
    }
  }

  /** Rewrites a page without holes (into the scratch buffer, which then swaps with the page's buffer). */
  #compact(p: Page): void {
    const l = this.#compactList.reset(p.leaf);
    l.addPage(p.buf, 0, p.count);
    this.#install(p, 0, writePage(this.#scratch[0]!, p.level, l, 0, l.n), p.count, p.used);
    l.clear();
  }

  // --------------------------------------------------------------------------------------------- bulk load

  /**
   * Loads strictly ascending entries into an empty tree, packing pages full (the last page of each level is
   * balanced with its neighbour so it is not under the minimum fill). Pages are written to the store as they
   * fill (they are new pages, so this is allowed before a flush) and are not kept in the cache. Atomic: if the
   * input is invalid or a write fails, the tree stays empty and the pages are freed.
   * Must not run concurrently with mutations of this tree.
   */
  async bulkLoad(sorted: Iterable<[Uint8Array, Uint8Array]> | AsyncIterable<[Uint8Array, Uint8Array]>): Promise<void> {
    this.#checkWritable();
    const iterable = sorted as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown } | null;
    if (
      iterable === null ||
      typeof iterable !== 'object' ||
      (typeof iterable[Symbol.iterator] !== 'function' && typeof iterable[Symbol.asyncIterator] !== 'function')
    ) {
      throw new InvalidArgumentError('bulkLoad takes an iterable or async iterable of [key, value] pairs');
    }
    if (!this.#isEmpty()) throw new InvalidArgumentError('bulkLoad needs an empty tree');
    const mod0 = this.#modCount;
    const allocated: number[] = [];
    let pending: Promise<void>[] = [];
    const lim = this.#lim;
    const emit = async (cells: Cell[], leaf: boolean, level: number, out: Cell[], lastKey: { k: Uint8Array | null }): Promise<void> => {
      let sep: Uint8Array;
      if (leaf) {
        sep = lastKey.k === null ? EMPTY : shortestSeparator(lastKey.k, cells[0]!.key);
        lastKey.k = cells[cells.length - 1]!.key;
      } else {
        sep = cells[0]!.key;
        cells[0] = { key: EMPTY, value: EMPTY, child: cells[0]!.child };
      }
      const no = this.#allocate();
      allocated.push(no);
      const img = encodePage(this.pageSize, leaf, level, cells);
      sealPage(img);
      out.push({ key: sep, value: EMPTY, child: no });
      pending.push(this.#store.write(no, img));
      if (pending.length >= 64) {
        const w = pending;
        pending = [];
        await Promise.all(w);
      }
    };
    /** Packs one level; `add` returns a promise only when pages were emitted. */
    class LevelBuilder {
      cur: Cell[] = [];
      curBytes = 0;
      held: Cell[] | null = null;
      readonly out: Cell[] = [];
      readonly lastKey = { k: null as Uint8Array | null };
      constructor(
        readonly leaf: boolean,
        readonly level: number,
      ) {}
      add(c: Cell): Promise<void> | undefined {
        const sz = cellBytes(c, this.leaf);
        let r: Promise<void> | undefined;
        if (this.curBytes + sz > lim.capacity) {
          if (this.held !== null) r = emit(this.held, this.leaf, this.level, this.out, this.lastKey);
          this.held = this.cur;
          this.cur = [];
          this.curBytes = 0;
        }
        this.cur.push(c);
        this.curBytes += sz;
        return r;
      }
      async finish(): Promise<void> {
        if (this.held === null) {
          if (this.cur.length > 0) await emit(this.cur, this.leaf, this.level, this.out, this.lastKey);
          return;
        }
        const curEffective = this.leaf ? this.curBytes : this.curBytes - this.cur[0]!.key.length;
        if (curEffective >= lim.minFill) {
          await emit(this.held, this.leaf, this.level, this.out, this.lastKey);
          await emit(this.cur, this.leaf, this.level, this.out, this.lastKey);
          return;
        }
        const all = this.held.concat(this.cur);
        if (cellsBytes(all, this.leaf) <= lim.capacity) {
          await emit(all, this.leaf, this.level, this.out, this.lastKey);
          return;
        }
        const s = cellSplitPoint(all, this.leaf, lim.capacity);
        await emit(all.slice(0, s), this.leaf, this.level, this.out, this.lastKey);
        await emit(all.slice(s), this.leaf, this.level, this.out, this.lastKey);
      }
    }
    let entries = 0;
    try {
      const leaves = new LevelBuilder(true, 0);
      let prev: Uint8Array | null = null;
      const addEntry = (e: unknown): Promise<void> | undefined => {
        if (!Array.isArray(e) || e.length < 2) throw new InvalidArgumentError('bulkLoad entries must be [key, value] pairs');
        const k = e[0] as Uint8Array;
        const v = e[1] as Uint8Array;
        this.#checkKey(k);
        this.#checkValue(k, v);
        if (prev !== null && compareKeys(prev, k) >= 0) {
          throw new InvalidArgumentError(`bulkLoad input is not strictly ascending at entry ${entries}`);
        }
        const key = k.slice();
        prev = key;
        entries++;
        return leaves.add({ key, value: v.slice(), child: 0 });
      };
      if (Symbol.asyncIterator in sorted) {
        for await (const e of sorted) {
          const r = addEntry(e);
          if (r !== undefined) await r;
        }
      } else {
        for (const e of sorted) {
          const r = addEntry(e);
          if (r !== undefined) await r;
        }
      }
      if (entries === 0) return;
      await leaves.finish();
      let level: LevelBuilder = leaves;
      while (level.out.length > 1) {
        const up = new LevelBuilder(false, level.level + 1);
        if (up.level > MAX_LEVEL) throw new Error('bulkLoad: tree would be too deep');
        for (const c of level.out) {
          const r = up.add(c);
          if (r !== undefined) await r;
        }
        await up.finish();
        level = up;
      }
      await Promise.all(pending);
      pending = [];
      if (this.#modCount !== mod0 || !this.#isEmpty()) {
        throw new InvalidArgumentError('the tree was modified during bulkLoad');
      }
      const oldRoot = this.#cache.peek(this.#rootNo);
      if (oldRoot !== undefined) this.#dropPage(oldRoot);
      else this.#retired.push(this.#rootNo);
      this.#rootNo = level.out[0]!.child;
      this.#rootLevel = level.level;
      this.#treePages = allocated.length;
      this.#modCount++;
    } catch (err) {
      await Promise.allSettled(pending);
      for (const no of allocated) this.#freeFresh(no);
      throw err;
    }
  }

  #isEmpty(): boolean {
    const root = this.#cache.peek(this.#rootNo);
    return root !== undefined ? root.leaf && root.count === 0 : false;
  }

  // ------------------------------------------------------------------------------------------------- flush

  /**
   * Writes every dirty page copy-on-write and returns the new root. Dirty pages of the previous flushed tree
   * go to new page numbers (parents are updated up to a new root); pages allocated since the last flush are
   * written in place. Relocation and the snapshot of the page images (each page's buffer lent to the flush) are
   * synchronous; then the pages are sealed, with turns of the event loop in between, and the writes awaited (those
   * awaits split nothing: a lent buffer does not change, mutations that run meanwhile leave their pages dirty for
   * the next flush, and pages they retire are reported by the next flush).
   */
  flush(): Promise<{ root: number; freedPages: number[] }> {
    const run = this.#flushChain.then(
      () => this.#flushOnce(),
      () => this.#flushOnce(),
    );
    this.#flushChain = run.catch(() => undefined);
    return run;
  }

  async #flushOnce(): Promise<{ root: number; freedPages: number[] }> {
    const cache = this.#cache;
    if (cache.dirtyCount === 0 && this.#rootNo === this.#flushedRoot && this.#retired.length === 0) {
      return { root: this.#flushedRoot, freedPages: [] };
    }
    this.#checkWritable();
    this.#flushes++;
    const toWrite: Page[] = [];
    const relocate = (page: Page): number => {
      if (!page.leaf) {
        const b = page.buf;
        for (let i = 0; i < page.count; i++) {
          const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
          const childNo = u32(b, off);
          const c = cache.peek(childNo);
          if (c !== undefined && c.dirty) {
            const n = relocate(c);
            if (n !== childNo) {
              this.#own(page);
              setU32(page.buf, off, n);
            }
          }
        }
      }
      toWrite.push(page);
      if (!this.#fresh.has(page.no)) {
        const newNo = this.#allocate();
        this.#retired.push(page.no);
        cache.rename(page, newNo);
      }
      return page.no;
    };
    const root = cache.peek(this.#rootNo);
    if (root !== undefined && root.dirty) this.#rootNo = relocate(root);
    if (toWrite.length !== cache.dirtyCount) {
      throw new Error(`btree flush: ${cache.dirtyCount - toWrite.length} dirty pages are not reachable from the root (internal error)`);
    }
    const freed = this.#retired;
    this.#retired = [];
    this.#fresh = new Set();
    const newRoot = this.#rootNo;
    // The pages' own buffers go to the store, sealed in place (no copy): a page is "lent" until its write
    // resolves, and a mutation meanwhile first gives it a copy of its own (#own; #install never recycles it), so a
    // lent buffer never changes. All of them are lent here, in this synchronous run (the cut); sealing them (a
    // checksum of every page) and building their search indexes then let the event loop turn after every
    // FLUSH_TURN_BYTES: 9,000 dirty pages of an index of 1,000,000 keys took 45-100 ms in one run.
    const snap = toWrite.map((p) => {
      p.lent = true;
      return { p, no: p.no, version: p.version, img: p.buf };
    });
    const giveBack = (): void => {
      for (const s of snap) if (s.p.buf === s.img) s.p.lent = false;
    };
    const writes: Promise<void>[] = [];
    try {
      let sealed = 0;
      for (const s of snap) {
        sealPage(s.img);
        // (A page changed meanwhile has a buffer of its own, and builds its index when it is next searched.)
        if (s.p.buf === s.img) buildSearchIndex(s.p);
        sealed += s.img.byteLength;
        if (sealed >= FLUSH_TURN_BYTES) {
          sealed = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
      // Queued in one synchronous run: the store coalesces the writes of consecutive pages.
      for (const s of snap) writes.push(this.#store.write(s.no, s.img));
      await Promise.all(writes);
    } catch (err) {
      // Every write started must settle before the buffers return to their pages.
      await Promise.allSettled(writes);
      giveBack();
      this.#retired = freed.concat(this.#retired);
      throw err;
    }
    giveBack();
    for (const s of snap) {
      if (s.p.version === s.version && s.p.cached && s.p.no === s.no) cache.markClean(s.p);
    }
    this.#flushedRoot = newRoot;
    cache.evict();
    return { root: newRoot, freedPages: freed };
  }

  // ------------------------------------------------------------------------------------------------- check

  /**
   * Full structural check: page checksums (every page not dirty is re-read from the store and compared with
   * its cached copy), key order within and across pages, separators bounding their children, one leaf depth,
   * no page reachable twice, minimum fill of non-root pages, and that every dirty page hangs under dirty
   * parents. Throws `CorruptionError` naming the page. Restarts if the tree changes meanwhile. A `signal` that fires
   * stops it before the next page with `AbortedError` (a tree of millions of keys takes seconds to check).
   */
  async check(options: { signal?: AbortSignal | undefined } = {}): Promise<BTreeCheckReport> {
    for (let attempt = 0; ; attempt++) {
      const pages = await this.#checkOnce(options.signal);
      if (pages) return { pageNumbers: [...pages], retiredPages: [...this.#retired] };
      if (attempt >= 3) throw new Error('btree check: the tree kept changing during check(); run it when idle');
    }
  }

  async #checkOnce(signal: AbortSignal | undefined): Promise<Set<number> | undefined> {
    const mod = this.#modCount;
    const lim = this.#lim;
    const cache = this.#cache;
    interface Item {
      no: number;
      level: number;
      lo: Uint8Array | null;
      hi: Uint8Array | null;
      parentDirty: boolean;
      /** The last page of its level (every ancestor is its parent's last child). */
      rightEdge: boolean;
    }
    const stack: Item[] = [{ no: this.#rootNo, level: -1, lo: null, hi: null, parentDirty: true, rightEdge: true }];
    const seen = new Set<number>();
    let dirtySeen = 0;
    while (stack.length > 0) {
      if (signal?.aborted) throw new AbortedError('the B-tree check was aborted', { cause: signal.reason });
      const it = stack.pop()!;
      const what = `btree page ${it.no}`;
      if (seen.has(it.no)) throw new CorruptionError(what, 'reachable twice');
      seen.add(it.no);
      const isRoot = it.level < 0;
      let cached = cache.peek(it.no);
      let buf: Uint8Array;
      let info: PageInfo;
      if (cached !== undefined && cached.dirty) {
        if (!it.parentDirty) throw new CorruptionError(what, 'dirty page under a clean parent');
        dirtySeen++;
        buf = cached.buf;
        info = validatePage(it.no, buf, lim, false);
      } else {
        buf = await this.#store.read(it.no);
        if (this.#modCount !== mod) return undefined;
        info = validatePage(it.no, buf, lim, true);
        cached = cache.peek(it.no);
        if (cached !== undefined && !cached.dirty && !bytesEqual(cached.buf, buf)) {
          throw new CorruptionError(what, 'cached copy differs from the stored page');
        }
      }
      if (cached !== undefined && (cached.count !== info.count || cached.used !== info.used || cached.heapStart !== info.heapStart || cached.level !== info.level)) {
        throw new CorruptionError(what, 'cached header fields disagree with the page (internal error)');
      }
      // The read path's remembered children hold cached pages only (else they would keep evicted pages alive).
      if (cached?.kids?.some((k) => k !== undefined && !k.cached)) {
        throw new CorruptionError(what, 'remembers a child page that is no longer cached (internal error)');
      }
      if (!isRoot && info.level !== it.level) {
        throw new CorruptionError(what, `level ${info.level}, expected ${it.level}`);
      }
      if (isRoot && info.level !== this.#rootLevel) {
        throw new CorruptionError(what, `root level ${info.level}, expected ${this.#rootLevel}`);
      }
      // Append splits leave the last page of a level under-full (README "Sizes and fill").
      if (!isRoot && !it.rightEdge && info.used < lim.minFill) {
        throw new CorruptionError(what, `holds ${info.used} bytes, under the minimum fill of ${lim.minFill}`);
      }
      if (!isRoot && info.count === 0) throw new CorruptionError(what, 'empty page that is not the root');
      if (!info.leaf && info.count < 2) throw new CorruptionError(what, 'branch with fewer than two children');
      const keyAt = (i: number): Uint8Array => {
        const off = u16(buf, HEADER_BYTES + SLOT_BYTES * i);
        return info.leaf ? buf.subarray(off + 4, off + 4 + u16(buf, off)) : buf.subarray(off + 6, off + 6 + u16(buf, off + 4));
      };
      if (info.count > 0) {
        const first = keyAt(info.leaf ? 0 : Math.min(1, info.count - 1));
        const last = keyAt(info.count - 1);
        if (it.lo !== null && (info.leaf || info.count > 1)) {
          const c = compareKeys(first, it.lo);
          if (info.leaf ? c < 0 : c <= 0) throw new CorruptionError(what, 'key below the separator that bounds the page');
        }
        if (it.hi !== null && compareKeys(last, it.hi) >= 0) {
          throw new CorruptionError(what, 'key not below the next separator');
        }
      }
      if (!info.leaf) {
        const childDirty = cached !== undefined && cached.dirty;
        for (let i = info.count - 1; i >= 0; i--) {
          const off = u16(buf, HEADER_BYTES + SLOT_BYTES * i);
          stack.push({
            no: u32(buf, off),
            level: info.level - 1,
            lo: i === 0 ? it.lo : keyAt(i).slice(),
            hi: i === info.count - 1 ? it.hi : keyAt(i + 1).slice(),
            parentDirty: childDirty,
            rightEdge: it.rightEdge && i === info.count - 1,
          });
        }
      }
    }
    if (this.#modCount !== mod) return undefined;
    if (dirtySeen !== cache.dirtyCount) {
      throw new CorruptionError('btree', `${cache.dirtyCount - dirtySeen} dirty pages are not reachable from the root`);
    }
    this.#treePages = seen.size;
    return seen;
  }

  // ---------------------------------------------------------------------------------------------- internals

  #checkWritable(): void {
    if (this.#readOnly) throw new ReadOnlyError('this B-tree was opened read-only');
  }

  #checkKey(key: Uint8Array): void {
    if (!(key instanceof Uint8Array)) throw new InvalidArgumentError('key must be a Uint8Array');
    if (key.length > this.maxKeyBytes) {
      throw new TooLargeError(`key of ${key.length} bytes exceeds the maximum of ${this.maxKeyBytes} for ${this.pageSize}-byte pages`);
    }
  }

  #checkValue(key: Uint8Array, value: Uint8Array): void {
    if (!(value instanceof Uint8Array)) throw new InvalidArgumentError('value must be a Uint8Array');
    if (value.length > this.maxValueBytes && key.length + value.length > this.maxEntryBytes) {
      throw new TooLargeError(
        `key + value of ${key.length + value.length} bytes exceed the maximum entry of ${this.maxEntryBytes} for ${this.pageSize}-byte pages`,
      );
    }
  }

  #levelError(child: Page, parent: Page): CorruptionError {
    return new CorruptionError(`btree page ${child.no}`, `level ${child.level} under a level-${parent.level} page ${parent.no}`);
  }

  #allocate(): number {
    const no = this.#store.allocate();
    if (!Number.isInteger(no) || no < 0 || no > MAX_PAGE_NO) {
      throw new InvalidArgumentError(`PageStore.allocate returned an invalid page number ${String(no)}`);
    }
    this.#fresh.add(no);
    return no;
  }

  #freeFresh(no: number): void {
    this.#fresh.delete(no);
    this.#store.free(no);
  }

  #createPage(no: number, buf: Uint8Array, leaf: boolean, level: number, count: number, heapStart: number, used: number): Page {
    const p = new Page(no, buf, leaf, level, count, heapStart, used);
    p.dirty = true;
    this.#cache.insert(p);
    return p;
  }

  /** A page leaves the tree: freed at once if it never was part of a flushed tree, else retired. */
  #dropPage(p: Page): void {
    this.#cache.remove(p);
    if (this.#fresh.has(p.no)) this.#freeFresh(p.no);
    else this.#retired.push(p.no);
  }

  #releasePins(ks: string): void {
    const set = this.#pinSets.get(ks);
    if (set === undefined) return;
    this.#pinSets.delete(ks);
    for (const p of set) this.#cache.unpin(p);
  }

  /**
   * The page `no`, from the cache or read and verified from the store, pinned (the caller unpins). Concurrent
   * loads of one page share a read. A page that entered the cache while we read it wins over what we read.
   */
  async #loadPinned(no: number): Promise<Page> {
    const cache = this.#cache;
    let p = cache.lookup(no);
    if (p === undefined) {
      // A read started before a flush (read ahead, see #readAhead) may hold an image that flush replaced: not reused.
      let entry = this.#loading.get(no);
      if (entry === undefined || entry.flushes !== this.#flushes) {
        cache.misses++;
        entry = this.#startRead(no);
      }
      const buf = await entry.read;
      p = cache.peek(no);
      if (p === undefined) {
        const info = validatePage(no, buf, this.#lim, true);
        p = new Page(no, buf, info.leaf, info.level, info.count, info.heapStart, info.used);
        buildSearchIndex(p);
        p.pins = 1;
        cache.insert(p);
        return p;
      }
    }
    cache.pin(p);
    return p;
  }
}

// ------------------------------------------------------------------------------------ page access helpers

function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function childAt(p: Page, i: number): number {
  return u32(p.buf, u16(p.buf, HEADER_BYTES + SLOT_BYTES * i));
}

/**
 * Index of the child whose subtree may hold `key`: last i >= 1 with key[i] <= key, else 0. A page receiving
 * ascending inserts at its end (its insert hint, Page.run) is probed at its last key first, so sequential
 * inserts cost one comparison there.
 */
function branchSearch(p: Page, key: Uint8Array): number {
  const b = p.buf;
  const kl = key.length;
  let lo = 1;
  let hi = p.count - 1;
  if (p.run > 0 && p.lastIns === hi && hi >= 1) {
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * hi);
    if (compareRange(b, off + BRANCH_ENTRY_HEADER, u16(b, off + 4), key, 0, kl) <= 0) return hi;
    hi--;
  }
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * mid);
    if (compareRange(b, off + BRANCH_ENTRY_HEADER, u16(b, off + 4), key, 0, kl) <= 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return lo - 1;
}

/** Last i >= 1 with key[i] < key, else 0: the child holding the greatest key below `key`. */
function branchSearchBefore(p: Page, key: Uint8Array): number {
  const b = p.buf;
  const kl = key.length;
  let lo = 1;
  let hi = p.count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * mid);
    if (compareRange(b, off + BRANCH_ENTRY_HEADER, u16(b, off + 4), key, 0, kl) < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return lo - 1;
}

/** Index of `key` in a leaf, or -(insertion point + 1). Probes the last key first like branchSearch. */
function leafSearch(p: Page, key: Uint8Array): number {
  const b = p.buf;
  const kl = key.length;
  let lo = 0;
  let hi = p.count - 1;
  if (p.run > 0 && p.lastIns === hi && hi >= 0) {
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * hi);
    const c = compareRange(b, off + LEAF_ENTRY_HEADER, u16(b, off), key, 0, kl);
    if (c === 0) return hi;
    if (c < 0) return -(hi + 2);
    hi--;
  }
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * mid);
    const c = compareRange(b, off + LEAF_ENTRY_HEADER, u16(b, off), key, 0, kl);
    if (c < 0) lo = mid + 1;
    else if (c > 0) hi = mid - 1;
    else return mid;
  }
  return -(lo + 1);
}

// ------------------------------------------------------------------------------ search index (reads only)

/**
 * The page's search index (Page.ixKeys) if it is valid, else null. A read that finds none records the version it
 * saw and builds one on the second read of the same version, so pages that change between reads never pay for one.
 * Valid means: built from this page at its current `version` (every change of a page's keys or slots bumps it in
 * the same synchronous run, see PageCache.markDirty), with the same `count` and the same buffer.
 *
 * Layout: one Float64Array; at the index of each key (entries first..count-1: a branch's entry 0 has no key) its
 * fingerprint * 65536 + its slot's entry offset, then the Page.ixPrefix bytes that every key starts with (for a
 * branch: keys 1..count-1). A fingerprint is the 4 key bytes after that prefix (zero-padded, big-endian, an
 * unsigned 32-bit number): it is monotone in key order, fp(a) < fp(b) implies a < b, and equal fingerprints need
 * a full key comparison. fp * 65536 + offset is exact (below 2^48) and orders like fp.
 */
function searchIndex(p: Page): Float64Array | null {
  if (p.ixVersion === p.version && p.ixCount === p.count && p.ixBuf === p.buf) return p.ixKeys;
  if (!buildOnRead) return null;
  if (p.ixSeen !== p.version) {
    p.ixSeen = p.version;
    return null;
  }
  return buildSearchIndex(p);
}

/**
 * Builds the search index of `p` (see searchIndex). Also called where the whole page was just read anyway, so
 * that building it costs no cache misses: after a flush sealed the page (its checksum read every byte) and after a
 * load validated it.
 */
function buildSearchIndex(p: Page): Float64Array {
  const b = p.buf;
  const n = p.count;
  const leaf = p.leaf;
  const first = leaf ? 0 : 1;
  const hdr = leaf ? LEAF_ENTRY_HEADER : BRANCH_ENTRY_HEADER;
  const lenAt = leaf ? 0 : 4;
  let plen = 0;
  let a = 0;
  if (n > first) {
    a = u16(b, HEADER_BYTES + SLOT_BYTES * first);
    const z = u16(b, HEADER_BYTES + SLOT_BYTES * (n - 1));
    const la = u16(b, a + lenAt);
    const lz = u16(b, z + lenAt);
    const m = la < lz ? la : lz;
    while (plen < m && b[a + hdr + plen] === b[z + hdr + plen]) plen++;
  }
  const x = new Float64Array(n + plen);
  for (let i = 0; i < plen; i++) x[n + i] = b[a + hdr + i]!;
  for (let i = first; i < n; i++) {
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
    x[i] = fingerprint(b, off + hdr + plen, u16(b, off + lenAt) - plen) * 65536 + off;
  }
  p.ixKeys = x;
  p.ixVersion = p.version;
  p.ixCount = n;
  p.ixPrefix = plen;
  p.ixBuf = b;
  if (!leaf) p.kids = new Array<Page | undefined>(n);
  return x;
}

/**
 * The cached child of branch `p` at entry `i`, as `cache.lookup(childAt(p, i))` (same hit counting), through
 * `p.kids` when it remembers that child: a remembered page is used only while it is cached under the number entry
 * i holds now (a cached page is the cache's page of its number, so this is exactly what lookup would return).
 */
function cachedChild(cache: PageCache, p: Page, i: number): Page | undefined {
  const no = childAt(p, i);
  const kids = p.kids;
  if (kids !== null && i < kids.length) {
    const c = kids[i];
    if (c !== undefined && c.cached && c.no === no) {
      cache.touch(c);
      return c;
    }
    const d = cache.lookup(no);
    if (d !== undefined) {
      // A page is held by at most one array: the entry it leaves (if still its own) is cleared first.
      const old = d.heldBy;
      if (old !== null && old[d.heldAt] === d) old[d.heldAt] = undefined;
      kids[i] = d;
      d.heldBy = kids;
      d.heldAt = i;
    }
    return d;
  }
  return cache.lookup(no);
}

/** The 4 bytes at b[o, o + n) (n may be smaller: zero-padded) as a big-endian unsigned number. */
function fingerprint(b: Uint8Array, o: number, n: number): number {
  if (n >= 4) return b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
  let v = 0;
  for (let i = 0; i < 4; i++) v = v * 256 + (i < n ? b[o + i]! : 0);
  return v;
}

/**
 * -1 when `key` sorts before every key that starts with the prefix x[n, n + plen), 1 when after every one, 0 when
 * it starts with it.
 */
function comparePrefix(key: Uint8Array, x: Float64Array, n: number, plen: number): number {
  const kl = key.length;
  const m = kl < plen ? kl : plen;
  for (let i = 0; i < m; i++) {
    const d = key[i]! - x[n + i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return kl < plen ? -1 : 0;
}

/** Entry offset of the key the last readLeafSearch found through an index (-1: not found that way). */
let foundOffset = -1;
/**
 * Set by #readBatchCached when it returns the number of a missing page: the branch whose child it is, if that
 * branch's children are leaves (else null), and the child's index (what #readAhead reads after).
 */
let missParent: Page | null = null;
let missIndex = 0;
/** False while `getCachedView(key, true)` runs: reads use valid search indexes but do not build any (searchIndex). */
let buildOnRead = true;

/**
 * leafSearch through the page's search index when it has a valid one (same result). Sets foundOffset to the
 * found entry's offset when the index found it, else to -1.
 */
function readLeafSearch(p: Page, key: Uint8Array): number {
  foundOffset = -1;
  const fp = p.count === 0 ? null : searchIndex(p);
  if (fp === null) return leafSearch(p, key);
  const n = p.count;
  const plen = p.ixPrefix;
  const c0 = comparePrefix(key, fp, n, plen);
  if (c0 !== 0) return c0 < 0 ? -1 : -(n + 1);
  const kl = key.length;
  const fk = fingerprint(key, plen, kl - plen) * 65536;
  let lo = fpLowerBound(fp, 0, n, fk);
  const b = p.buf;
  for (; lo < n && fp[lo]! < fk + 65536; lo++) {
    const off = fp[lo]! - fk;
    const c = compareRange(b, off + LEAF_ENTRY_HEADER + plen, u16(b, off) - plen, key, plen, kl - plen);
    if (c === 0) {
      foundOffset = off;
      return lo;
    }
    if (c > 0) break;
  }
  return -(lo + 1);
}

/** The first index in [lo, hi) whose search-index value is >= fk (hi if none). */
function fpLowerBound(fp: Float64Array, lo: number, hi: number, fk: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (fp[mid]! < fk) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** branchSearch through the page's search index when it has a valid one (same result). */
function readBranchSearch(p: Page, key: Uint8Array): number {
  const fp = p.count <= 1 ? null : searchIndex(p);
  if (fp === null) return branchSearch(p, key);
  const n = p.count;
  const plen = p.ixPrefix;
  const c0 = comparePrefix(key, fp, n, plen);
  if (c0 !== 0) return c0 < 0 ? 0 : n - 1;
  const kl = key.length;
  const fk = fingerprint(key, plen, kl - plen) * 65536;
  let lo = fpLowerBound(fp, 1, n, fk);
  // Entries before lo are below key; of those with key's fingerprint, the ones <= key come first.
  const b = p.buf;
  for (; lo < n && fp[lo]! < fk + 65536; lo++) {
    const off = fp[lo]! - fk;
    if (compareRange(b, off + BRANCH_ENTRY_HEADER + plen, u16(b, off + 4) - plen, key, plen, kl - plen) > 0) break;
  }
  return lo - 1;
}

/** First index whose key is >= key (strict: > key). */
function leafLowerBound(p: Page, key: Uint8Array, strict: boolean): number {
  const b = p.buf;
  const kl = key.length;
  let lo = 0;
  let hi = p.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const off = u16(b, HEADER_BYTES + SLOT_BYTES * mid);
    const c = compareRange(b, off + LEAF_ENTRY_HEADER, u16(b, off), key, 0, kl);
    if (c < 0 || (strict && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function leafValueCopy(p: Page, i: number): Uint8Array {
  const b = p.buf;
  const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
  const start = off + LEAF_ENTRY_HEADER + u16(b, off);
  return b.slice(start, start + u16(b, off + 2));
}

function branchKeyCopy(p: Page, i: number): Uint8Array {
  const b = p.buf;
  const off = u16(b, HEADER_BYTES + SLOT_BYTES * i);
  return b.slice(off + BRANCH_ENTRY_HEADER, off + BRANCH_ENTRY_HEADER + u16(b, off + 4));
}

/**
 * Where to cut `cells` into two pages: the index s (1..n-1) that minimizes the larger half. For branches the
 * first key of the right half moves up to the parent, so it does not count. Both halves fit `capacity` for any
 * list that overflows by at most one entry (entries are at most half a page).
 */
function cellSplitPoint(cells: readonly Cell[], leaf: boolean, capacity: number): number {
  const n = cells.length;
  let total = 0;
  for (const c of cells) total += cellBytes(c, leaf);
  let best = 1;
  let bestMax = Infinity;
  let left = 0;
  for (let s = 1; s < n; s++) {
    left += cellBytes(cells[s - 1]!, leaf);
    const right = total - left - (leaf ? 0 : cells[s]!.key.length);
    const m = Math.max(left, right);
    if (m < bestMax) {
      bestMax = m;
      best = s;
    }
  }
  if (bestMax > capacity) throw new Error(`btree split: halves of ${bestMax} bytes do not fit a page (internal error)`);
  return best;
}
