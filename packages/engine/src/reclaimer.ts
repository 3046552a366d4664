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
  #seq = 0;
  readonly #readers = new Map<number, number>();
  readonly #snapshots = new Map<number, number>();

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

  /** Records blocks that the live state stopped referencing while checkpoint `generation` was the durable one. */
  defer(extents: readonly Extent[], generation: number): void {
    if (extents.length === 0) return;
    const seq = this.#seq++;
    for (const e of extents) this.#pending.push({ start: e.start, count: e.count, generation, seq });
  }

  /** Entries loaded from a checkpoint's meta blob (no reader can hold them after a reopen). */
  restore(entries: readonly DeferredEntry[]): void {
    for (const e of entries) this.#pending.push({ ...e, seq: -1 });
  }

  /** Removes and returns every entry that may be reused once checkpoint `durableGeneration` is durable. */
  takeEligible(durableGeneration: number): Extent[] {
    if (this.#pending.length === 0) return [];
    let minSnapshot = Infinity;
    for (const g of this.#snapshots.keys()) minSnapshot = Math.min(minSnapshot, g);
    let minReader = Infinity;
    for (const s of this.#readers.keys()) minReader = Math.min(minReader, s);
    const out: Extent[] = [];
    const keep: Pending[] = [];
    for (const p of this.#pending) {
      const free = p.generation < durableGeneration && minSnapshot > p.generation && minReader > p.seq;
      if (free) out.push({ start: p.start, count: p.count });
      else keep.push(p);
    }
    this.#pending = keep;
    return out;
  }

  /** What a checkpoint persists: entries still held. */
  pendingEntries(): DeferredEntry[] {
    return this.#pending.map((p) => ({ start: p.start, count: p.count, generation: p.generation }));
  }

  get pendingBlocks(): number {
    let n = 0;
    for (const p of this.#pending) n += p.count;
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
    for (const p of this.#pending) yield { start: p.start, count: p.count };
  }
}
