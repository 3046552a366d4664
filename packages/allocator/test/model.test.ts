import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitmapAllocator, type Extent } from '../src/index.js';

/*
 * Model-based test: a BitmapAllocator against plain sets. Each run applies a random sequence of operations
 * (valid and invalid) and, after every one, compares counts with the model and calls check().
 * VDE_LONG=1 runs over 100,000 operations in all (asserted); the default run about 10,000.
 * The model also tracks the search cursor and checks which run a contiguous allocation picks (the documented
 * bounded best fit), so the chunk summary that lets the search skip chunks of small holes can never change the
 * choice. Sizes past 2048 blocks (CHUNK_BLOCKS) span several summary chunks; `comb` frees every k-th block of an
 * owned extent, so some chunks hold only holes too small for a request.
 */

const LONG = Boolean(process.env.VDE_LONG);
const SIZES = [1, 31, 32, 33, 1000, 4096, 4097, 12_345];
const RUNS_PER_SIZE = LONG ? 300 : 40;
const MIN_OPS = LONG ? 60 : 20;
const MAX_OPS = 80;
/** Operations each size must have run (VDE_LONG: 8 sizes x 16,667 > 100,000). */
const MIN_TOTAL_PER_SIZE = LONG ? 16_667 : 800;

type Op =
  | { op: 'alloc'; count: number; contiguous: boolean }
  | { op: 'free'; pick: number; a: number; b: number }
  | { op: 'comb'; pick: number; step: number }
  | { op: 'freeBad'; block: number }
  | { op: 'mark'; start: number; len: number }
  | { op: 'reserve'; start: number; len: number }
  | { op: 'grow'; by: number }
  | { op: 'stage'; pick: number; a: number; b: number; tag: number }
  | { op: 'stageBad'; block: number }
  | { op: 'commit'; upTo: number }
  | { op: 'reload' }
  | { op: 'badArgs'; kind: number };

const nat = fc.nat({ max: 1 << 20 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('alloc' as const), count: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 5000 })), contiguous: fc.boolean() }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant('free' as const), pick: nat, a: nat, b: nat }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('comb' as const), pick: nat, step: fc.integer({ min: 2, max: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('freeBad' as const), block: nat }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('mark' as const), start: nat, len: fc.integer({ min: 1, max: 40 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('reserve' as const), start: nat, len: fc.integer({ min: 1, max: 16 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('grow' as const), by: fc.integer({ min: 0, max: 70 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('stage' as const), pick: nat, a: nat, b: nat, tag: fc.integer({ min: 0, max: 20 }) }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('stageBad' as const), block: nat }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('commit' as const), upTo: fc.integer({ min: -1, max: 20 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('reload' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('badArgs' as const), kind: fc.integer({ min: 0, max: 9 }) }), weight: 1 },
);

class Model {
  n: number;
  /** 1 = used (allocated, reserved or staged). */
  used: Uint8Array;
  usedCount = 0;
  reserved: Uint8Array;
  readonly staged = new Map<number, number>(); // block -> tag
  owned: Extent[] = []; // allocated, not staged
  /** Where the allocator's next search starts: the end of the last allocation; 0 after a load. */
  cursor = 0;

  constructor(n: number) {
    this.n = n;
    this.used = new Uint8Array(n);
    this.reserved = new Uint8Array(n);
  }

  get free(): number {
    return this.n - this.usedCount;
  }

  isUsed(b: number): boolean {
    return this.used[b] === 1;
  }

  use(b: number): void {
    if (this.used[b] === 1) throw new Error(`model: block ${b} used twice`);
    this.used[b] = 1;
    this.usedCount++;
  }

  release(b: number): void {
    if (this.used[b] !== 1) throw new Error(`model: block ${b} released twice`);
    this.used[b] = 0;
    this.usedCount--;
  }

  grow(n: number): void {
    const used = new Uint8Array(n);
    used.set(this.used);
    const reserved = new Uint8Array(n);
    reserved.set(this.reserved);
    this.used = used;
    this.reserved = reserved;
    this.n = n;
  }

  runs(): number[] {
    const out: number[] = [];
    let len = 0;
    for (let b = 0; b < this.n; b++) {
      if (this.used[b] === 1) {
        if (len) out.push(len);
        len = 0;
      } else len++;
    }
    if (len) out.push(len);
    return out;
  }

  /** Free runs in block order. */
  runList(): Extent[] {
    const out: Extent[] = [];
    for (let b = 0; b < this.n; ) {
      if (this.used[b] === 1) {
        b++;
        continue;
      }
      const start = b;
      while (b < this.n && this.used[b] === 0) b++;
      out.push({ start, count: b - start });
    }
    return out;
  }

  /**
   * Where the documented policy puts a contiguous allocation of `count` blocks (some run fits): one block goes
   * to the first free block from the cursor (wrapping); more go to the first run of exactly `count`, or the
   * smallest run >= count among the first 16 such runs, visiting runs that start at or past the cursor first,
   * then those that start before it.
   */
  expectedStart(count: number): number {
    if (count === 1) {
      for (let k = 0; k < this.n; k++) {
        const b = (this.cursor + k) % this.n;
        if (this.used[b] === 0) return b;
      }
      throw new Error('model: no free block');
    }
    const runs = this.runList();
    const ordered = [...runs.filter((r) => r.start >= this.cursor), ...runs.filter((r) => r.start < this.cursor)];
    let best: Extent | undefined;
    let candidates = 0;
    for (const r of ordered) {
      if (r.count < count) continue;
      if (!best || r.count < best.count) best = r;
      if (r.count === count || ++candidates >= 16) break;
    }
    if (!best) throw new Error(`model: no run of ${count}`);
    return best.start;
  }

  largest(): number {
    let best = 0;
    for (const r of this.runs()) if (r > best) best = r;
    return best;
  }

  /** Separate reserved ranges if blocks [start, start + len) were reserved too. */
  reservedRangeCount(start: number, len: number): number {
    let ranges = 0;
    let inRange = false;
    for (let b = 0; b < this.n; b++) {
      const r = this.reserved[b] === 1 || (b >= start && b < start + len);
      if (r && !inRange) ranges++;
      inRange = r;
    }
    return ranges;
  }

  /** Removes a sub-range of owned extent `pick` from `owned` and returns it. */
  takeOwned(pick: number, a: number, b: number): Extent | undefined {
    if (this.owned.length === 0) return undefined;
    const i = pick % this.owned.length;
    const e = this.owned[i]!;
    const offset = a % e.count;
    const len = 1 + (b % (e.count - offset));
    const rest: Extent[] = [];
    if (offset > 0) rest.push({ start: e.start, count: offset });
    if (offset + len < e.count) rest.push({ start: e.start + offset + len, count: e.count - offset - len });
    this.owned.splice(i, 1, ...rest);
    return { start: e.start + offset, count: len };
  }
}

function blocksOf(extents: readonly Extent[]): number[] {
  return extents.flatMap((e) => Array.from({ length: e.count }, (_, k) => e.start + k));
}

/** Plain checks (vitest's expect is too slow for 100,000 operations). */
function assert(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message());
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    const got = (err as { code?: unknown }).code;
    assert(got === code, () => `expected ${code}, got ${String(got)}: ${String(err)}`);
    return;
  }
  throw new Error(`expected ${code}, but nothing was thrown`);
}

function compareAll(alloc: BitmapAllocator, model: Model): void {
  assert(alloc.blockCount === model.n, () => `blockCount ${alloc.blockCount}, model ${model.n}`);
  for (let b = 0; b < model.n; b++) {
    assert(alloc.isAllocated(b) === model.isUsed(b), () => `block ${b}: allocator ${alloc.isAllocated(b)}, model ${model.isUsed(b)}`);
  }
  const largest = model.largest();
  assert(alloc.largestFreeRun === largest, () => `largestFreeRun ${alloc.largestFreeRun}, model ${largest}`);
}

function apply(state: { alloc: BitmapAllocator }, model: Model, op: Op): void {
  const alloc = state.alloc;
  const n = model.n;
  switch (op.op) {
    case 'alloc': {
      const runsBefore = model.runs().sort((x, y) => y - x);
      const largest = runsBefore[0] ?? 0;
      const fails = op.count > model.free || (op.contiguous && largest < op.count);
      if (fails) {
        expectCode(() => alloc.allocate(op.count, { contiguous: op.contiguous }), 'ERR_VDE_FULL');
        return;
      }
      const want = largest >= op.count ? model.expectedStart(op.count) : -1;
      const extents = alloc.allocate(op.count, { contiguous: op.contiguous });
      const blocks = blocksOf(extents);
      assert(blocks.length === op.count, () => `allocate(${op.count}) returned ${blocks.length} blocks`);
      for (const b of blocks) {
        assert(b >= 0 && b < n && !model.isUsed(b), () => `allocate returned used or invalid block ${b}`);
        model.use(b); // throws on a block returned twice
      }
      if (largest >= op.count) {
        assert(extents.length === 1, () => `a run of ${largest} fits ${op.count} but got ${extents.length} extents`);
        assert(extents[0]!.start === want, () => `allocate(${op.count}) from cursor ${model.cursor} took ${extents[0]!.start}, policy says ${want}`);
      } else {
        // Largest first and as few extents as the largest runs allow.
        for (let i = 1; i < extents.length; i++) {
          assert(extents[i]!.count <= extents[i - 1]!.count, () => `extents not largest first: ${JSON.stringify(extents)}`);
        }
        let fewest = 0;
        for (let sum = 0; sum < op.count; fewest++) sum += runsBefore[fewest]!;
        assert(extents.length === fewest, () => `${extents.length} extents where ${fewest} would do`);
      }
      model.owned.push(...extents);
      const last = extents[extents.length - 1]!;
      model.cursor = last.start + last.count;
      return;
    }
    case 'comb': {
      // Frees every step-th block of an owned extent: a field of holes too small for most requests.
      if (model.owned.length === 0) return;
      const i = op.pick % model.owned.length;
      const e = model.owned[i]!;
      const holes: Extent[] = [];
      const rest: Extent[] = [];
      for (let b = e.start; b < e.start + e.count; b += op.step) {
        holes.push({ start: b, count: 1 });
        rest.push({ start: b + 1, count: Math.min(op.step - 1, e.start + e.count - b - 1) });
      }
      alloc.free(holes);
      for (const h of holes) model.release(h.start);
      model.owned.splice(i, 1, ...rest.filter((r) => r.count > 0));
      return;
    }
    case 'free': {
      const e = model.takeOwned(op.pick, op.a, op.b);
      if (!e) return;
      alloc.free([e]);
      for (const b of blocksOf([e])) model.release(b);
      return;
    }
    case 'freeBad': {
      if (n === 0) return;
      const b = op.block % n;
      if (model.isUsed(b) && model.reserved[b] !== 1 && !model.staged.has(b)) return; // valid: not this op's job
      expectCode(() => alloc.free([{ start: b, count: 1 }]), 'ERR_VDE_INVALID_ARGUMENT');
      return;
    }
    case 'mark': {
      if (n === 0) return;
      const start = op.start % n;
      const len = Math.min(op.len, n - start);
      const blocks = Array.from({ length: len }, (_, k) => start + k);
      if (blocks.every((b) => !model.isUsed(b))) {
        alloc.markAllocated([{ start, count: len }]);
        blocks.forEach((b) => model.use(b));
        model.owned.push({ start, count: len });
      } else {
        expectCode(() => alloc.markAllocated([{ start, count: len }]), 'ERR_VDE_INVALID_ARGUMENT');
      }
      return;
    }
    case 'reserve': {
      if (n === 0) return;
      const start = op.start % n;
      const len = Math.min(op.len, n - start);
      const blocks = Array.from({ length: len }, (_, k) => start + k);
      if (!blocks.every((b) => !model.isUsed(b) || model.reserved[b] === 1)) {
        expectCode(() => alloc.reserve({ start, count: len }), 'ERR_VDE_INVALID_ARGUMENT');
      } else if (model.reservedRangeCount(start, len) > 64) {
        expectCode(() => alloc.reserve({ start, count: len }), 'ERR_VDE_TOO_LARGE');
      } else {
        alloc.reserve({ start, count: len });
        for (const b of blocks) {
          if (model.reserved[b] === 1) continue;
          model.use(b);
          model.reserved[b] = 1;
        }
      }
      return;
    }
    case 'grow': {
      alloc.grow(n + op.by);
      model.grow(n + op.by);
      return;
    }
    case 'stage': {
      const e = model.takeOwned(op.pick, op.a, op.b);
      if (!e) return;
      alloc.stageFree([e], op.tag);
      for (const b of blocksOf([e])) model.staged.set(b, op.tag);
      return;
    }
    case 'stageBad': {
      if (n === 0) return;
      const b = op.block % n;
      if (model.isUsed(b) && model.reserved[b] !== 1 && !model.staged.has(b)) return;
      expectCode(() => alloc.stageFree([{ start: b, count: 1 }], 1), 'ERR_VDE_INVALID_ARGUMENT');
      return;
    }
    case 'commit': {
      const expected = [...model.staged].filter(([, tag]) => tag <= op.upTo).map(([b]) => b).sort((x, y) => x - y);
      const released = blocksOf(alloc.commitFrees(op.upTo)).sort((x, y) => x - y);
      assert(released.join() === expected.join(), () => `commitFrees(${op.upTo}) released ${released.join()}, expected ${expected.join()}`);
      for (const b of expected) {
        model.staged.delete(b);
        model.release(b);
      }
      return;
    }
    case 'reload': {
      const image = alloc.serialize();
      assert(image.byteLength === BitmapAllocator.serializedByteLength(n), () => `image of ${image.byteLength} bytes`);
      state.alloc = BitmapAllocator.load(image);
      model.cursor = 0;
      // Staged frees are not persisted: the blocks come back as plain allocated ones.
      for (const [b] of model.staged) model.owned.push({ start: b, count: 1 });
      model.staged.clear();
      return;
    }
    case 'badArgs': {
      const cases: [() => unknown, string][] = [
        [() => alloc.allocate(0), 'ERR_VDE_INVALID_ARGUMENT'],
        [() => alloc.allocate(1.5), 'ERR_VDE_INVALID_ARGUMENT'],
        [() => alloc.allocate(Number.NaN), 'ERR_VDE_INVALID_ARGUMENT'],
        [() => alloc.free([{ start: -1, count: 1 }]), 'ERR_VDE_RANGE'],
        [() => alloc.free([{ start: 0, count: 0 }]), 'ERR_VDE_INVALID_ARGUMENT'],
        [() => alloc.markAllocated([{ start: n, count: 1 }]), 'ERR_VDE_RANGE'],
        [() => alloc.stageFree([{ start: 0.5, count: 1 }], 1), 'ERR_VDE_INVALID_ARGUMENT'],
        [() => alloc.isAllocated(n), 'ERR_VDE_RANGE'],
        [() => alloc.reserve({ start: 0, count: n + 1 }), 'ERR_VDE_RANGE'],
        [() => alloc.grow(-1), 'ERR_VDE_INVALID_ARGUMENT'],
      ];
      const [fn, code] = cases[op.kind % cases.length]!;
      expectCode(fn, code);
      return;
    }
  }
}

describe('BitmapAllocator against a Set model', () => {
  for (const size of SIZES) {
    it(`${size} blocks`, () => {
      let total = 0;
      fc.assert(
        fc.property(fc.array(opArb, { minLength: MIN_OPS, maxLength: MAX_OPS }), (ops) => {
          const state = { alloc: new BitmapAllocator(size) };
          const model = new Model(size);
          ops.forEach((op, i) => {
            const before = state.alloc.freeCount;
            try {
              apply(state, model, op);
            } catch (err) {
              throw new Error(`op ${i} ${JSON.stringify(op)} (free before: ${before}): ${String(err)}`, { cause: err });
            }
            state.alloc.check();
            assert(state.alloc.freeCount === model.free, () => `op ${i}: freeCount ${state.alloc.freeCount}, model ${model.free}`);
            assert(state.alloc.stagedCount === model.staged.size, () => `op ${i}: stagedCount ${state.alloc.stagedCount}, model ${model.staged.size}`);
            if (model.n <= 64 || i % 16 === 0) compareAll(state.alloc, model);
          });
          compareAll(state.alloc, model);
          total += ops.length;
        }),
        { numRuns: RUNS_PER_SIZE },
      );
      expect(total).toBeGreaterThanOrEqual(MIN_TOTAL_PER_SIZE);
    }, LONG ? 600_000 : 30_000);
  }
});
