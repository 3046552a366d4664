import { ClosedError, type Snapshot, type VirtualDiskEngine } from '@vde/engine';
import type { IssueOrder } from './issue-order.js';

/**
 * One engine snapshot shared by every iterator, explicit snapshot and clear that was issued while no write
 * started or finished (IssueOrder.epoch unchanged): their views are identical, so one checkpoint serves them all.
 * The engine snapshot is closed when its last lease is released and a write has made it stale (or on close).
 */
class SharedSnapshot {
  readonly snapshot: Promise<Snapshot>;
  readonly epoch: number;
  refs = 0;
  #closed = false;

  constructor(snapshot: Promise<Snapshot>, epoch: number) {
    this.snapshot = snapshot;
    this.epoch = epoch;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const snap = await this.snapshot.catch(() => undefined);
    await snap?.close();
  }
}

/** A counted hold on a shared engine snapshot; `release()` is idempotent. */
export class SnapshotLease {
  #shared: SharedSnapshot | undefined;
  readonly #pool: SnapshotPool;

  /** @internal */
  constructor(shared: SharedSnapshot | undefined, pool: SnapshotPool) {
    this.#shared = shared;
    this.#pool = pool;
    if (shared) shared.refs++;
  }

  /** The engine snapshot (taken by a checkpoint; resolves once that is done). */
  get snapshot(): Promise<Snapshot> {
    if (!this.#shared) return Promise.reject(new ClosedError('the snapshot is closed'));
    return this.#shared.snapshot;
  }

  /** Another lease on the same engine snapshot (a released lease shares nothing: its snapshot rejects). */
  share(): SnapshotLease {
    return new SnapshotLease(this.#shared, this.#pool);
  }

  async release(): Promise<void> {
    const shared = this.#shared;
    if (!shared) return;
    this.#shared = undefined;
    shared.refs--;
    await this.#pool.maybeClose(shared);
  }
}

/** Hands out leases on engine snapshots; see SharedSnapshot. */
export class SnapshotPool {
  readonly #engine: VirtualDiskEngine;
  readonly #order: IssueOrder;
  #current: SharedSnapshot | undefined;
  readonly #closing = new Set<Promise<void>>();

  constructor(engine: VirtualDiskEngine, order: IssueOrder) {
    this.#engine = engine;
    this.#order = order;
  }

  /**
   * A lease on a view of the store as of now: later writes wait for the capture (IssueOrder rule 1), so none of
   * them is visible in it. Synchronous, as abstract-level requires.
   */
  capture(): SnapshotLease {
    const epoch = this.#order.epoch;
    let current = this.#current;
    if (!current || current.epoch !== epoch) {
      if (current) this.#retire(current);
      const snapshot = this.#order.track(this.#engine.snapshot());
      // A failed capture is reported to the lease holders that await it; do not leave it unhandled here.
      snapshot.catch(() => undefined);
      current = new SharedSnapshot(snapshot, epoch);
      this.#current = current;
    }
    return new SnapshotLease(current, this);
  }

  /** @internal */
  async maybeClose(shared: SharedSnapshot): Promise<void> {
    if (shared.refs > 0) return;
    if (shared === this.#current && shared.epoch === this.#order.epoch) return; // still current: keep for reuse
    if (shared === this.#current) this.#current = undefined;
    await this.#closeShared(shared);
  }

  /** A write was issued: the cached snapshot is stale; close it now unless someone still holds it. */
  noteWrite(): void {
    const current = this.#current;
    if (!current) return;
    this.#current = undefined;
    this.#retire(current);
  }

  /** Closes the cached snapshot and waits for every close in progress (before the engine closes). */
  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    if (current) this.#retire(current);
    await Promise.all([...this.#closing]);
  }

  #retire(shared: SharedSnapshot): void {
    if (shared.refs === 0) void this.#closeShared(shared);
  }

  #closeShared(shared: SharedSnapshot): Promise<void> {
    const p = shared.close().catch(() => undefined);
    this.#closing.add(p);
    void p.then(() => this.#closing.delete(p));
    return p;
  }
}
