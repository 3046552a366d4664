/**
 * A linearizability checker for key-value histories (Wing & Gong's search with Lowe's memoization, as in Porcupine
 * and Knossos). It knows nothing about VDE: record `invoke`/`ok` events around the calls of any store.
 *
 * Model: each key is an independent register (absent = null). `put(value)` sets it; `get` returns the value or
 * null; `delete` clears it and may report whether the key existed. A history is linearizable if every operation can
 * be placed at one instant between its invoke and its ok so that the sequence obeys the model. Operations with no
 * `ok` (in flight at the end, or failed in an unknown way) may take effect at any time after their invoke, or
 * never; operations with `fail` certainly did not take effect and are ignored.
 *
 * The history is split by key (a register history is linearizable iff each key's is), and each key is searched
 * depth-first over "which pending call takes effect next", caching every (set of linearized ops, register value)
 * already explored. A step and time bound make the check total: past the bound the verdict is `unknown`.
 */

export type KvOp = { f: 'put'; key: string; value: string } | { f: 'get'; key: string } | { f: 'delete'; key: string };

/** The result of an ok: for get the value read (null: absent); for delete whether it existed (or undefined). */
export type KvResult = string | null | boolean | undefined;

/**
 * One event of a history. `time` orders events (equal times: concurrent). At run time a history whose events all
 * lack `time` (plain JavaScript, or a cast) is taken in array order (event i at time i), as Knossos reads its
 * histories; a history with a time on some events only is refused.
 */
export type HistoryEvent =
  | { type: 'invoke'; id: number; time: number; op: KvOp; client?: number }
  | { type: 'ok'; id: number; time: number; result?: KvResult }
  | { type: 'fail'; id: number; time: number };

export interface LinearizabilityOptions {
  /** Search steps over all keys before the verdict is `unknown` (default 10,000,000). */
  maxSteps?: number;
  /** Milliseconds before the verdict is `unknown` (default 10,000). */
  timeoutMs?: number;
}

export interface LinearizabilityResult {
  verdict: 'ok' | 'illegal' | 'unknown';
  /** The key whose history is not linearizable (or where the bound was hit). */
  key?: string;
  /** Keys checked and search steps taken. */
  keys: number;
  steps: number;
  /** Operations of the offending key, in invoke order, for a report. */
  ops?: string[];
}

interface Operation {
  op: KvOp;
  call: number;
  ret: number;
  /** undefined while pending (no ok). */
  result: KvResult;
  pending: boolean;
}

interface Entry {
  isCall: boolean;
  opIndex: number;
  time: number;
  prev: Entry | undefined;
  next: Entry | undefined;
  match: Entry | undefined;
}

type Register = string | null;

/** Why `op` is not a KvOp the model knows, or undefined when it is one. */
function badOp(op: unknown): string | undefined {
  if (op === null || typeof op !== 'object') return 'has no op';
  const { f, key, value } = op as { f?: unknown; key?: unknown; value?: unknown };
  if (f !== 'put' && f !== 'get' && f !== 'delete') return `has op.f ${String(f)} (the model knows put, get and delete)`;
  if (typeof key !== 'string') return 'has no string op.key';
  if (f === 'put' && typeof value !== 'string') return 'is a put without a string op.value';
  return undefined;
}

/**
 * Builds per-key operations from events; throws RangeError on a malformed history (ok before invoke, ids reused,
 * an unknown event type or op, a time missing on some events only, a result the model cannot hold).
 */
function collect(history: readonly HistoryEvent[]): Map<string, Operation[]> {
  const iterable = history as unknown as Iterable<unknown> | null | undefined;
  if (iterable === null || typeof iterable !== 'object' || typeof iterable[Symbol.iterator] !== 'function') {
    throw new RangeError('a history is an array of invoke/ok/fail events');
  }
  const open = new Map<number, { op: KvOp; time: number }>();
  const ended = new Set<number>();
  const byKey = new Map<string, Operation[]>();
  const add = (op: Operation): void => {
    let list = byKey.get(op.op.key);
    if (!list) byKey.set(op.op.key, (list = []));
    list.push(op);
  };
  const events: readonly unknown[] = Array.isArray(iterable) ? iterable : [...iterable];
  const timed = events.some((e) => e !== null && typeof e === 'object' && (e as { time?: unknown }).time !== undefined);
  events.forEach((raw, index) => {
    if (raw === null || typeof raw !== 'object') throw new RangeError(`event ${index} is not an object`);
    const e = raw as HistoryEvent;
    const time = timed ? (e.time as unknown) : index;
    if (typeof time !== 'number' || Number.isNaN(time)) {
      throw new RangeError(`event ${index} has no numeric time: give every event a time, or none (then array order is time order)`);
    }
    if (e.type === 'invoke') {
      const why = badOp(e.op);
      if (why !== undefined) throw new RangeError(`event ${index} (invoke of operation ${e.id}) ${why}`);
      if (open.has(e.id) || ended.has(e.id)) throw new RangeError(`operation id ${e.id} is invoked twice`);
      open.set(e.id, { op: e.op, time });
      return;
    }
    if (e.type !== 'ok' && e.type !== 'fail') {
      throw new RangeError(`event ${index} has type ${String((e as { type?: unknown }).type)}: expected invoke, ok or fail`);
    }
    const inv = open.get(e.id);
    if (!inv) throw new RangeError(`operation ${e.id} ends without an invoke`);
    if (time < inv.time) throw new RangeError(`operation ${e.id} ends before it starts`);
    open.delete(e.id);
    ended.add(e.id);
    if (e.type === 'fail') return;
    const r = e.result;
    // `undefined` too: a get's ok must say what it read (`null`: absent); without it no state could match, and the
    // verdict would be 'illegal', blaming the store for a gap in the history.
    if (inv.op.f === 'get' && r !== null && typeof r !== 'string') {
      throw new RangeError(`event ${index}: the get of operation ${e.id} returned ${typeof r}, expected a string or null`);
    }
    add({ op: inv.op, call: inv.time, ret: time, result: r, pending: false });
  });
  for (const inv of open.values()) {
    if (inv.op.f === 'get') continue; // a read that never returned constrains nothing
    add({ op: inv.op, call: inv.time, ret: Infinity, result: undefined, pending: true });
  }
  return byKey;
}

/** One model step: whether `o` may take effect in `state`, and the state after it. */
function step(state: Register, o: Operation): [boolean, Register] {
  switch (o.op.f) {
    case 'put':
      return [true, o.op.value];
    case 'get':
      return [o.pending || o.result === state, state];
    case 'delete':
      return [o.pending || typeof o.result !== 'boolean' || o.result === (state !== null), null];
  }
}

function buildList(ops: Operation[]): Entry {
  const entries: Entry[] = [];
  ops.forEach((o, i) => {
    const call: Entry = { isCall: true, opIndex: i, time: o.call, prev: undefined, next: undefined, match: undefined };
    const ret: Entry = { isCall: false, opIndex: i, time: o.ret, prev: undefined, next: undefined, match: undefined };
    call.match = ret;
    entries.push(call, ret);
  });
  // By time; at equal times calls first (an op that starts when another ends may be ordered either way).
  entries.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1) || (a.time === Infinity ? a.opIndex - b.opIndex : 0));
  const head: Entry = { isCall: false, opIndex: -1, time: -Infinity, prev: undefined, next: undefined, match: undefined };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }
  return head;
}

function lift(call: Entry): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

/** Checks one key's operations. Returns the verdict and the steps it took. */
function checkKey(ops: Operation[], budget: { steps: number; deadline: number }): 'ok' | 'illegal' | 'unknown' {
  const head = buildList(ops);
  const bits = new Uint32Array(Math.ceil(ops.length / 32) + 1);
  const cache = new Set<string>();
  const calls: { entry: Entry; state: Register }[] = [];
  let state: Register = null;
  let entry = head.next;
  while (head.next) {
    if (--budget.steps < 0 || ((budget.steps & 1023) === 0 && Date.now() > budget.deadline)) return 'unknown';
    if (!entry) return 'illegal'; // cannot happen for a well-formed list (a return always follows its call)
    if (entry.isCall) {
      const [ok, next] = step(state, ops[entry.opIndex]!);
      if (ok) {
        const i = entry.opIndex;
        bits[i >>> 5]! |= 1 << (i & 31);
        const key = `${bits.join(',')}|${next === null ? '\u0000' : `=${next}`}`;
        if (!cache.has(key)) {
          cache.add(key);
          calls.push({ entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        bits[i >>> 5]! &= ~(1 << (i & 31));
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: backtrack.
      const top = calls.pop();
      if (!top) return 'illegal';
      state = top.state;
      const i = top.entry.opIndex;
      bits[i >>> 5]! &= ~(1 << (i & 31));
      unlift(top.entry);
      entry = top.entry.next;
    }
  }
  return 'ok';
}

function describeOp(o: Operation): string {
  const what = o.op.f === 'put' ? `put(${JSON.stringify(o.op.value)})` : o.op.f;
  const res = o.pending ? 'pending' : o.op.f === 'put' ? 'ok' : JSON.stringify(o.result ?? null);
  return `[${o.call}, ${o.ret === Infinity ? '∞' : o.ret}] ${what} → ${res}`;
}

/**
 * Checks that a key-value history is linearizable. Events may come in any order; `time` orders them (a logical
 * clock is best: `HistoryRecorder` uses one).
 */
export function checkLinearizable(history: readonly HistoryEvent[], options: LinearizabilityOptions = {}): LinearizabilityResult {
  const maxSteps = options.maxSteps ?? 10_000_000;
  const budget = { steps: maxSteps, deadline: Date.now() + (options.timeoutMs ?? 10_000) };
  const byKey = collect(history);
  let keys = 0;
  for (const [key, ops] of byKey) {
    keys++;
    ops.sort((a, b) => a.call - b.call);
    const verdict = checkKey(ops, budget);
    if (verdict !== 'ok') return { verdict, key, keys, steps: maxSteps - budget.steps, ops: ops.slice(0, 200).map(describeOp) };
  }
  return { verdict: 'ok', keys, steps: maxSteps - budget.steps };
}

/**
 * Records a history around real calls: `invoke` just before the call starts, `ok` after its promise resolved,
 * `fail` when it rejected with an error `definitelyFailed` accepts (default: none — a rejected call is left
 * pending, since it may have taken effect). Time is a logical clock shared by all clients of this recorder.
 */
function defaultResult(op: KvOp): (value: unknown) => KvResult {
  return (value) => {
    if (op.f === 'put') return undefined;
    if (op.f === 'delete') return typeof value === 'boolean' ? value : undefined;
    if (value === undefined || value === null) return null;
    if (typeof value === 'string') return value;
    throw new TypeError(
      `HistoryRecorder.record: get(${JSON.stringify(op.key)}) returned ${Object.prototype.toString.call(value)}; ` +
        'pass toResult to turn it into a string or null',
    );
  };
}

export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  #clock = 0;
  #nextId = 1;
  readonly #definitelyFailed: (err: unknown) => boolean;

  constructor(options: { definitelyFailed?: (err: unknown) => boolean } = {}) {
    this.#definitelyFailed = options.definitelyFailed ?? (() => false);
  }

  /**
   * Runs `call`, recording `op` around it; `toResult` turns the call's value into the history's result. Without
   * it (or with `undefined`): a get's string or `null` is its result and `undefined` counts as absent (`null`), as
   * `Map#get` and level-style stores return; a delete's boolean says whether the key existed; a put's value is
   * ignored. A get that returns anything else (bytes, an object) needs `toResult`: without it the operation stays
   * without an `ok` (it may or may not have happened) and `record` rejects with a `TypeError` saying so, so that a history is never checked against a result it could not read.
   */
  async record<T>(op: KvOp, call: () => Promise<T>, toResult: (value: T) => KvResult = defaultResult(op), client?: number): Promise<T> {
    const id = this.#nextId++;
    this.events.push({ type: 'invoke', id, time: ++this.#clock, op, ...(client === undefined ? {} : { client }) });
    let value: T;
    try {
      value = await call();
    } catch (err) {
      if (this.#definitelyFailed(err)) this.events.push({ type: 'fail', id, time: ++this.#clock });
      throw err;
    }
    this.events.push({ type: 'ok', id, time: ++this.#clock, result: toResult(value) });
    return value;
  }
}
