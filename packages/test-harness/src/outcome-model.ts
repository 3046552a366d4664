/**
 * What a key may hold after a crash, given what the store acknowledged.
 *
 * Each write (a put of a version, or a delete) is recorded when it is issued (`invoke`) and when it is acknowledged
 * (`ack`) or rejected (`fail`), stamped with a logical clock. After the crash, a key may hold the result of any
 * write that is not certainly overwritten: a write W is certainly overwritten when some acknowledged write of the
 * same key was issued after W had ended (acknowledged or rejected). A write still in flight at the crash, or one that
 * was rejected, may or may not have taken effect; an acknowledged one must have. The state from before the run is
 * allowed only while no write of the key was acknowledged.
 */

/** A key's state: a version number, or null for "absent". */
export type KeyState = number | null;

interface WriteRecord {
  id: number;
  key: string;
  result: KeyState;
  invokedAt: number;
  /** Time of the ack or the rejection; undefined while in flight. */
  endedAt: number | undefined;
  acked: boolean;
}

export class OutcomeModel {
  #clock = 0;
  readonly #initial = new Map<string, KeyState>();
  readonly #writes = new Map<string, WriteRecord[]>();
  readonly #byId = new Map<number, WriteRecord>();
  #nextId = 1;
  #acked = 0;

  /** `initial`: each key's state before the run (keys not listed start absent). */
  constructor(initial: ReadonlyMap<string, KeyState> = new Map()) {
    for (const [k, v] of initial) this.#initial.set(k, v);
  }

  /** Records an issued write; returns its id for `ack`/`fail`. `result` is the version a put writes, null for a delete. */
  invoke(key: string, result: KeyState): number {
    const id = this.#nextId++;
    const w: WriteRecord = { id, key, result, invokedAt: ++this.#clock, endedAt: undefined, acked: false };
    let list = this.#writes.get(key);
    if (!list) this.#writes.set(key, (list = []));
    list.push(w);
    this.#byId.set(id, w);
    return id;
  }

  ack(id: number): void {
    const w = this.#get(id);
    w.endedAt = ++this.#clock;
    w.acked = true;
    this.#acked++;
    this.#prune(w.key);
  }

  /**
   * Forgets writes that ended before the newest acknowledged write of their key was invoked: `allowed()` already
   * ignores them, and without this a long soak's model would grow with every operation (and be measured as the
   * store's memory). `written()` then lists only the values still in play.
   */
  #prune(key: string): void {
    const list = this.#writes.get(key);
    if (!list || list.length < 16) return;
    let lastAckedInvoke = -1;
    for (const x of list) if (x.acked) lastAckedInvoke = Math.max(lastAckedInvoke, x.invokedAt);
    const keep: WriteRecord[] = [];
    for (const x of list) {
      if (x.endedAt !== undefined && x.endedAt < lastAckedInvoke) this.#byId.delete(x.id);
      else keep.push(x);
    }
    this.#writes.set(key, keep);
  }

  /** The write was rejected: it may or may not have taken effect (e.g. its fsync failed after the record was written). */
  fail(id: number): void {
    this.#get(id).endedAt = ++this.#clock;
  }

  /** Acknowledged writes so far. */
  get acknowledged(): number {
    return this.#acked;
  }

  /** Every key written or initially present. */
  keys(): string[] {
    return [...new Set([...this.#initial.keys(), ...this.#writes.keys()])];
  }

  /** Whether the key had an acknowledged write. */
  hasAck(key: string): boolean {
    return (this.#writes.get(key) ?? []).some((w) => w.acked);
  }

  /** Every state the key ever had or was written with (for telling a stale value from a torn one). */
  written(key: string): KeyState[] {
    return [...new Set([this.#initial.get(key) ?? null, ...(this.#writes.get(key) ?? []).map((w) => w.result)])];
  }

  /** The states the key may hold now (deduplicated). */
  allowed(key: string): KeyState[] {
    const list = this.#writes.get(key) ?? [];
    let lastAckedInvoke = -1;
    for (const w of list) if (w.acked) lastAckedInvoke = Math.max(lastAckedInvoke, w.invokedAt);
    const out = new Set<KeyState>();
    if (lastAckedInvoke < 0) out.add(this.#initial.get(key) ?? null);
    for (const w of list) {
      if (w.endedAt !== undefined && w.endedAt < lastAckedInvoke) continue; // certainly overwritten
      out.add(w.result);
    }
    return [...out];
  }

  #get(id: number): WriteRecord {
    const w = this.#byId.get(id);
    if (!w) throw new RangeError(`unknown write id ${id}`);
    if (w.endedAt !== undefined) throw new RangeError(`write ${id} already ended`);
    return w;
  }
}
