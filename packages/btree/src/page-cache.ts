/**
 * A page held in memory. `buf` is always a well-formed page (format.ts) except for its checksum; `count`,
 * `heapStart` and `used` mirror its header so the hot paths need not decode it.
 */
export class Page {
  no: number;
  buf: Uint8Array;
  leaf: boolean;
  level: number;
  count: number;
  heapStart: number;
  /** Bytes of slots + live entries. */
  used: number;
  dirty = false;
  pins = 0;
  /** Bumped on every modification; flush marks a page clean only if it did not change while being written. */
  version = 0;
  /**
   * Insert-pattern hint (memory only): slot of the last entry inserted (-2: unknown), and the run of inserts right
   * after (> 0) or right before (< 0) the previous one. Splits use it to keep pages full under sequential inserts.
   */
  lastIns = -2;
  run = 0;
  /**
   * Search index of this page's keys (memory only, built by btree.ts `buildSearchIndex`): `ixKeys[i]` holds the
   * fingerprint and the entry offset of key i, then come the `ixPrefix` bytes of the prefix all keys share. Valid while `ixVersion`,
   * `ixCount` and `ixBuf` match `version`, `count` and `buf`. `ixSeen` is the version at which a read last found
   * no valid index (the index is built at the second read of one version: pages that change between reads never
   * pay for one).
   */
  ixKeys: Float64Array | null = null;
  ixVersion = -1;
  ixCount = 0;
  ixPrefix = 0;
  ixBuf: Uint8Array | null = null;
  ixSeen = -1;
  /**
   * Branch pages with a search index: child Page objects by entry index, as last looked up (memory only). An entry
   * is used only if that page is still cached under the number the entry holds now (`BTree` `cachedChild`); a page
   * that leaves the cache is cleared from the array (see `heldBy`).
   */
  kids: (Page | undefined)[] | null = null;
  /**
   * The `kids` array (and its index) that holds this page, if any: the cache clears that entry when the page leaves
   * it (evicted or removed), so a branch never keeps an uncached page (and its buffer) alive.
   */
  heldBy: (Page | undefined)[] | null = null;
  heldAt = 0;
  /** `buf` is being written by a flush: it must not change until the write resolves (BTree #own). */
  lent = false;
  /** Looked up since eviction last passed it (second-chance bit, see PageCache). */
  ref = false;
  /** In the cache's map (false once evicted or dropped; a pin may still hold the object). */
  cached = false;
  prev: Page | null = null;
  next: Page | null = null;

  constructor(no: number, buf: Uint8Array, leaf: boolean, level: number, count: number, heapStart: number, used: number) {
    this.no = no;
    this.buf = buf;
    this.leaf = leaf;
    this.level = level;
    this.count = count;
    this.heapStart = heapStart;
    this.used = used;
  }
}

/** Clears the `kids` entry that holds `p` (it is leaving the cache). */
function release(p: Page): void {
  const k = p.heldBy;
  if (k !== null) {
    if (k[p.heldAt] === p) k[p.heldAt] = undefined;
    p.heldBy = null;
  }
}

/**
 * Page cache bounded by a page count (bytes / pageSize). Second-chance (CLOCK) approximation of LRU over the
 * *evictable* pages only: a page is evictable when it is clean and unpinned, and only evictable pages are on the
 * list, so eviction never looks at dirty or pinned pages. A page joins the list at its tail when it becomes
 * evictable; a lookup only sets its `ref` bit (no relinking: on random reads over many pages, moving each
 * looked-up page to the tail cost about 13% of a cached lookup, in cache misses on its list neighbours).
 * Eviction takes pages from the head: one with `ref` set has it cleared and moves to the tail instead (each
 * page at most once per pass, so eviction is amortized O(1)). Dirty and pinned pages may push the cache over its bound; that is
 * accepted (the engine checkpoints when `dirtyBytes` grows) rather than failing a mutation.
 *
 * Thread safety: none needed; every method is synchronous.
 */
export class PageCache {
  readonly #map = new Map<number, Page>();
  /** Sentinel of the circular LRU list: head.next is least recently used. */
  readonly #head: Page;
  #capacityPages: number;
  dirtyCount = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(capacityPages: number) {
    this.#capacityPages = Math.max(1, capacityPages);
    const h = new Page(-1, new Uint8Array(0), true, 0, 0, 0, 0);
    h.prev = h;
    h.next = h;
    this.#head = h;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The bound, in pages. */
  get capacity(): number {
    return this.#capacityPages;
  }

  /** The page if cached, counted as a hit and marked referenced (see the class comment). */
  lookup(no: number): Page | undefined {
    const p = this.#map.get(no);
    if (p !== undefined) {
      this.hits++;
      p.ref = true;
    }
    return p;
  }

  /** Counts a hit on a page found without `lookup` (it must be cached), as `lookup` would. */
  touch(p: Page): void {
    this.hits++;
    p.ref = true;
  }

  /** The page if cached, without touching statistics or recency. */
  peek(no: number): Page | undefined {
    return this.#map.get(no);
  }

  /** Adds a page (replacing any stale page of the same number). */
  insert(p: Page): void {
    const old = this.#map.get(p.no);
    if (old !== undefined) this.remove(old);
    this.#map.set(p.no, p);
    p.cached = true;
    if (p.dirty) this.dirtyCount++;
    if (!p.dirty && p.pins === 0) this.#linkTail(p);
    this.evict();
  }

  remove(p: Page): void {
    if (!p.cached) return;
    this.#map.delete(p.no);
    release(p);
    p.cached = false;
    if (p.next !== null) this.#unlink(p);
    if (p.dirty) {
      p.dirty = false;
      this.dirtyCount--;
    }
  }

  /** Moves a page to another number (copy-on-write relocation at flush). */
  rename(p: Page, newNo: number): void {
    this.#map.delete(p.no);
    const stale = this.#map.get(newNo);
    if (stale !== undefined) this.remove(stale);
    p.no = newNo;
    this.#map.set(newNo, p);
  }

  pin(p: Page): void {
    if (p.pins++ === 0 && p.next !== null) this.#unlink(p);
  }

  unpin(p: Page): void {
    if (--p.pins === 0 && p.cached && !p.dirty) {
      this.#linkTail(p);
      this.evict();
    }
  }

  markDirty(p: Page): void {
    p.version++;
    if (p.dirty) return;
    p.dirty = true;
    if (p.cached) {
      this.dirtyCount++;
      if (p.next !== null) this.#unlink(p);
    }
  }

  markClean(p: Page): void {
    if (!p.dirty) return;
    p.dirty = false;
    if (p.cached) {
      this.dirtyCount--;
      if (p.pins === 0) this.#linkTail(p);
    }
  }

  /** Evicts clean, unpinned pages from the head of the list while over capacity (referenced ones get a second chance). */
  evict(): void {
    const h = this.#head;
    while (this.#map.size > this.#capacityPages && h.next !== h) {
      const victim = h.next!;
      this.#unlink(victim);
      if (victim.ref) {
        victim.ref = false;
        this.#linkTail(victim);
        continue;
      }
      this.#map.delete(victim.no);
      release(victim);
      victim.cached = false;
      this.evictions++;
    }
  }

  pages(): IterableIterator<Page> {
    return this.#map.values();
  }

  #linkTail(p: Page): void {
    const h = this.#head;
    const last = h.prev!;
    p.prev = last;
    p.next = h;
    last.next = p;
    h.prev = p;
  }

  #unlink(p: Page): void {
    p.prev!.next = p.next;
    p.next!.prev = p.prev;
    p.prev = null;
    p.next = null;
  }
}
