/**
 * IssueOrder: makes the engine's concurrent operations look to level code as if each read and each snapshot
 * were taken at the instant it was *issued* (abstract-level's implicit-snapshot rule), without serializing
 * reads behind writes.
 *
 * Rules (each wait points back to something issued earlier, so there is no cycle and no deadlock):
 *  1. A write (put, del, batch, clear) is submitted to the engine only after every read and snapshot capture
 *     issued before it has finished, and after the write issued before it was submitted (writes reach the
 *     engine in issue order). A write of a key also waits until the writes of that key issued before it have
 *     completed, and a clear until every write issued before it has: the engine orders one key's writes by when
 *     each takes the key's stripe, and a batch takes its stripes a few turns later than a put, so submission
 *     order alone let `batch([put k 1]); put(k, 2)` end with 1, and `put(k); clear()` keep k.
 *  2. A clear holds back the writes issued after it until it is complete (a later put is never cleared).
 *  3. A live read (get, getMany, has, hasMany) first waits for the multi-key batches issued before it that are
 *     still running: the engine applies a batch's index changes one key at a time, and a read must never see
 *     half of a batch.
 * Snapshot captures (engine checkpoints under the exclusive gate) are atomic with respect to batches already.
 *
 * Fast path: when nothing is in flight that a call has to wait for, the call starts synchronously.
 */
export class IssueOrder {
  readonly #reads = new Set<Promise<unknown>>();
  readonly #batches = new Set<Promise<unknown>>();
  /** Every write issued and not yet settled. */
  readonly #writes = new Set<Promise<unknown>>();
  /** The last write issued for each key, while it runs. */
  readonly #lastByKey = new Map<string, Promise<unknown>>();
  /** Settles when the last issued write has been submitted (or, for a clear, has finished). */
  #writeTail: Promise<unknown> | undefined;
  /** Bumped when a write is issued and when it settles: equal epochs mean no write started or ended between. */
  #epoch = 0;

  get epoch(): number {
    return this.#epoch;
  }

  /** Registers an already started read-like operation (a snapshot capture) that later writes must wait for. */
  track<T>(promise: Promise<T>): Promise<T> {
    this.#hold(this.#reads, promise);
    return promise;
  }

  /** Runs a live read under rule 3. */
  read<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#batches.size === 0 ? fn() : Promise.allSettled([...this.#batches]).then(fn);
    this.#hold(this.#reads, p);
    return p;
  }

  /** Runs a write under rules 1 and 2. `multiKey` marks a batch that live reads must not see half of. */
  write<T>(fn: () => Promise<T>, options: { keys?: readonly string[]; multiKey?: boolean; holdLaterWrites?: boolean } = {}): Promise<T> {
    const waits: Promise<unknown>[] = [...this.#reads];
    if (this.#writeTail) waits.push(this.#writeTail);
    if (options.holdLaterWrites) {
      for (const w of this.#writes) waits.push(w);
    } else if (options.keys) {
      for (const k of options.keys) {
        const w = this.#lastByKey.get(k);
        if (w) waits.push(w);
      }
    }
    this.#epoch++;
    let p: Promise<T>;
    if (waits.length === 0) {
      p = fn();
      if (options.holdLaterWrites) this.#setTail(p);
    } else {
      const ready = Promise.allSettled(waits);
      p = ready.then(fn);
      this.#setTail(options.holdLaterWrites ? p : ready);
    }
    if (options.multiKey) this.#hold(this.#batches, p);
    this.#hold(this.#writes, p);
    if (options.keys) {
      for (const k of options.keys) {
        this.#lastByKey.set(k, p);
        const forget = (): void => {
          if (this.#lastByKey.get(k) === p) this.#lastByKey.delete(k);
        };
        p.then(forget, forget);
      }
    }
    const bump = (): void => {
      this.#epoch++;
    };
    p.then(bump, bump);
    return p;
  }

  #setTail(p: Promise<unknown>): void {
    const tail = p.then(
      () => undefined,
      () => undefined,
    );
    this.#writeTail = tail;
    void tail.then(() => {
      if (this.#writeTail === tail) this.#writeTail = undefined;
    });
  }

  #hold(set: Set<Promise<unknown>>, p: Promise<unknown>): void {
    set.add(p);
    const drop = (): void => {
      set.delete(p);
    };
    p.then(drop, drop);
  }
}
