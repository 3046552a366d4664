import type { Extent } from '@vde/allocator';
import type { DeferredEntry } from './meta.js';

/**
 * Deferred frees (DESIGN.md invariant 4, "no early reuse").
 *
 * A block freed by an overwrite, a delete or a checkpoint's copy-on-write may be handed out again only when
 *  (a) the record that freed it is durable,
 *  (b) the durable checkpoint no longer references it: the entry's `generation` (the checkpoint that was current
 *      when it was freed) is older than the durable generation,
 *  (c) no snapshot that could read it is alive: no held snapshot generation <= the entry's generation, and
 *  (d) no reader that started before the free is still running: no active reader with `startSeq <= entry.seq`.
 * (a) follows from (b): a checkpoint fsyncs the log before its superblock.
 *
 * Thread safety: every method is synchronous, so each call is atomic with respect to other async callers.
 */
interface Pending extends DeferredEntry {
  seq: number;
}

export class Reclaimer {
  #pending: Pending[] = [];
  /**
   * Old checkpoint meta blobs. Only a read-only open reads one (between the superblock it chose and its index): a
   * snapshot or a read of this engine never does. So they wait only for (b) and the external readers, not for this
   * engine's snapshots, readers or named snapshots: held like other blocks, each checkpoint under a long-lived
   * snapshot kept one more blob, each listing all the deferred entries before it (quadratic growth).
   */
  #pendingMeta: DeferredEntry[] = [];
  /** Entries before this index were taken. */
  #head = 0;
  #seq = 0;
  readonly #readers = new Map<number, number>();
  readonly #snapshots = new Map<number, number>();
  /** The oldest generation a reader in another open (a read-only open, maybe in another process) reads. */
  #externalMin = Infinity;
  /**
   * The oldest named snapshot the durable checkpoint lists. A read-only open that read that checkpoint may open it,
   * so it stays held (whatever this engine did since) until a newer checkpoint that no longer lists it is durable.
   */
  #durableNamedMin = Infinity;

  /** Starts a read; the blocks it may see stay allocated until `endRead`. */
  beginRead(): number {
    const s = this.#seq;
    this.#readers.set(s, (this.#readers.get(s) ?? 0) + 1);
    return s;
  }

  endRead(startSeq: number): void {
    const n = (this.#readers.get(startSeq) ?? 0) - 1;
    if (n <= 0) this.#readers.delete(startSeq);
    else this.#readers.set(startSeq, n);
  }

  holdSnapshot(generation: number): void {
    this.#snapshots.set(generation, (this.#snapshots.get(generation) ?? 0) + 1);
  }

  releaseSnapshot(generation: number): void {
    const n = (this.#snapshots.get(generation) ?? 0) - 1;
    if (n <= 0) this.#snapshots.delete(generation);
    else this.#snapshots.set(generation, n);
  }

  /**
   * The oldest checkpoint generation that read-only opens of the container read (-1: one has not told yet, keep
   * everything; Infinity: none). Such a reader holds like a snapshot of that generation.
   */
  setExternalMin(generation: number): void {
    this.#externalMin = generation;
  }

  /** See #durableNamedMin: set when a checkpoint is durable (and at open) from the snapshots it lists. */
  setDurableNamedMin(generation: number): void {
    this.#durableNamedMin = generation;
  }

  /** Records blocks that the live state stopped referencing while checkpoint `generation` was the durable one. */
  defer(extents: readonly Extent[], generation: number): void {
    if (extents.length === 0) return;
    const seq = this.#seq++;
    for (const e of extents) this.#pending.push({ start: e.start, count: e.count, generation, seq });
  }

  /** The meta blob of the checkpoint that was durable as `generation` (see #pendingMeta). */
  deferMeta(extent: Extent, generation: number): void {
    this.#pendingMeta.push({ start: extent.start, count: extent.count, generation });
  }

  /**
   * Entries loaded from a checkpoint's meta blob (no reader of this engine can hold them after a reopen). The blob
   * does not say which entries are old meta blobs, but `previousMeta`, the meta blob of the checkpoint before it
   * (the other superblock), is always listed, and exactly as deferred: that entry waits as a meta blob (see
   * #pendingMeta), not for named snapshots, which never read it (held by them, each reopen kept one more blob).
   */
  restore(entries: readonly DeferredEntry[], previousMeta?: DeferredEntry, replacedMeta: readonly DeferredEntry[] = []): void {
    // A version 2 blob lists the runs of the blob it replaced apart (FORMAT.md, "Meta blob, version 2").
    for (const e of replacedMeta) this.#pendingMeta.push({ ...e });
    for (const e of entries) {
      if (previousMeta && e.start === previousMeta.start && e.count === previousMeta.count && e.generation === previousMeta.generation) {
        this.#pendingMeta.push({ ...e });
        previousMeta = undefined;
      } else {
        this.#pending.push({ ...e, seq: -1 });
      }
    }
  }

  /**
   * Removes and returns every entry that may be reused once checkpoint `durableGeneration` is durable.
   * Entries are kept in the order they were deferred, and both `generation` and `seq` only grow along that order,
   * so the eligible entries are always a prefix: this costs O(entries taken), which matters because every read
   * ends with a call.
   */
  takeEligible(durableGeneration: number): Extent[] {
    const out: Extent[] = [];
    // Meta blobs: deferred in checkpoint order, so the eligible ones are a prefix too.
    let m = 0;
    while (m < this.#pendingMeta.length) {
      const p = this.#pendingMeta[m]!;
      if (!(p.generation < durableGeneration && this.#externalMin > p.generation)) break;
      out.push({ start: p.start, count: p.count });
      m++;
    }
    if (m > 0) this.#pendingMeta = this.#pendingMeta.slice(m);
    const pending = this.#pending;
    if (this.#head >= pending.length) return out;
    let minSnapshot = Math.min(this.#externalMin, this.#durableNamedMin);
    for (const g of this.#snapshots.keys()) minSnapshot = Math.min(minSnapshot, g);
    let minReader = Infinity;
    for (const s of this.#readers.keys()) minReader = Math.min(minReader, s);
    let i = this.#head;
    for (; i < pending.length; i++) {
      const p = pending[i]!;
      if (!(p.generation < durableGeneration && minSnapshot > p.generation && minReader > p.seq)) break;
      out.push({ start: p.start, count: p.count });
    }
    this.#head = i;
    if (this.#head > 1024 && this.#head * 2 > pending.length) {
      this.#pending = pending.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }

  /**
   * Removes the blocks of `extent` from the pending entries (old meta blobs too) and returns them (recovery: a
   * durable log record after the checkpoint owns them, so the writer had taken them already). The split entries keep
   * their place, so the order takeEligible relies on holds. Linear in the pending entries; only recovery calls it,
   * on a conflict.
   */
  withdraw(extent: Extent): Extent[] {
    const out: Extent[] = [];
    const kept = cutOut(this.#pending, this.#head, extent, out);
    if (out.length > 0) {
      this.#pending = kept;
      this.#head = 0;
    }
    // An old meta blob restored as one (see restore) is withdrawn the same way.
    this.#pendingMeta = cutOut(this.#pendingMeta, 0, extent, out);
    return out;
  }

  /**
   * What a checkpoint persists: entries still held, and of the old meta blobs those of `metaFrom` and later (the
   * checkpoint lists only the blob it replaces, which the next open recognizes by the other superblock: see restore).
   */
  pendingEntries(metaFrom = -Infinity): DeferredEntry[] {
    return [...this.heldEntries(), ...this.metaEntries(metaFrom)];
  }

  /** The pending entries that are not old meta blobs. */
  heldEntries(): DeferredEntry[] {
    return this.#pending.slice(this.#head).map((p) => ({ start: p.start, count: p.count, generation: p.generation }));
  }

  /** The old meta blob runs of `metaFrom` and later (see pendingEntries). */
  metaEntries(metaFrom = -Infinity): DeferredEntry[] {
    return this.#pendingMeta.filter((p) => p.generation >= metaFrom).map((p) => ({ ...p }));
  }

  /**
   * Old meta blobs older than `generation` still held for read-only opens. A checkpoint's image marks them free: no
   * superblock on disk names them any more, so only an open that read its superblock before may still read one,
   * and it checks the blob's checksum and reads again (after a reopen, no reader of this engine needs them).
   */
  metaBefore(generation: number): Extent[] {
    return this.#pendingMeta.filter((p) => p.generation < generation).map((p) => ({ start: p.start, count: p.count }));
  }

  get pendingEntryCount(): number {
    return this.#pending.length - this.#head + this.#pendingMeta.length;
  }

  get pendingBlocks(): number {
    let n = 0;
    for (const e of this.pendingExtents()) n += e.count;
    return n;
  }

  get activeReaders(): number {
    let n = 0;
    for (const c of this.#readers.values()) n += c;
    return n;
  }

  get heldSnapshots(): number {
    let n = 0;
    for (const c of this.#snapshots.values()) n += c;
    return n;
  }

  /** Every block of every pending entry (for consistency checks). */
  *pendingExtents(): Iterable<Extent> {
    for (let i = this.#head; i < this.#pending.length; i++) yield { start: this.#pending[i]!.start, count: this.#pending[i]!.count };
    for (const p of this.#pendingMeta) yield { start: p.start, count: p.count };
  }
}

/**
 * The entries of `list` from `from` on with the blocks of `extent` cut out (an entry split around it keeps its place
 * and fields); the blocks cut out are pushed to `out`.
 */
function cutOut<T extends Extent>(list: readonly T[], from: number, extent: Extent, out: Extent[]): T[] {
  const end = extent.start + extent.count;
  const kept: T[] = [];
  for (let i = from; i < list.length; i++) {
    const p = list[i]!;
    const pEnd = p.start + p.count;
    if (pEnd <= extent.start || p.start >= end) {
      kept.push(p);
      continue;
    }
    const lo = Math.max(p.start, extent.start);
    const hi = Math.min(pEnd, end);
    out.push({ start: lo, count: hi - lo });
    if (p.start < lo) kept.push({ ...p, count: lo - p.start });
    if (hi < pEnd) kept.push({ ...p, start: hi, count: pEnd - hi });
  }
  return kept;
}
