import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitmapAllocator, type Extent } from '../src/index.js';

/*
 * Model-based test: a BitmapAllocator against plain sets. Each run applies a random sequence of operations
 * (valid and invalid) and, after every one, compares counts with the model and calls check().
 * VDE_LONG=1 runs about 100,000 operations in all; the default run about 10,000.
 */

const LONG = Boolean(process.env.VDE_LONG);
const SIZES = [1, 31, 32, 33, 1000, 4096];
const RUNS_PER_SIZE = LONG ? 300 : 30;
const MAX_OPS = 80;

type Op =
  | { op: 'alloc'; count: number; contiguous: boolean }
  | { op: 'free'; pick: number; a: number; b: number }
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
  readonly used = new Set<number>();
  readonly reserved = new Set<number>();
  readonly staged = new Map<number, number>(); // block -> tag
  owned: Extent[] = []; // allocated, not staged

  constructor(n: number) {
    this.n = n;
  }

  get free(): number {
    return this.n - this.used.size;
  }

  runs(): number[] {
    const out: number[] = [];
    let len = 0;
    for (let b = 0; b < this.n; b++) {
      if (this.used.has(b)) {
        if (len) out.push(len);
        len = 0;
      } else len++;
    }
    if (len) out.push(len);
    return out;
  }

  largest(): number {
    return Math.max(0, ...this.runs());
  }

  reservedRangeCount(extra: Set<number>): number {
    let ranges = 0;
    let inRange = false;
    for (let b = 0; b < this.n; b++) {
      const r = this.reserved.has(b) || extra.has(b);
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

function expectCode(fn: () => unknown, code: string): void {
  expect(fn).toThrow(expect.objectContaining({ code }));
}

function compareAll(alloc: BitmapAllocator, model: Model): void {
  expect(alloc.blockCount).toBe(model.n);
  for (let b = 0; b < model.n; b++) {
    if (alloc.isAllocated(b) !== model.used.has(b)) throw new Error(`block ${b}: allocator ${alloc.isAllocated(b)}, model ${model.used.has(b)}`);
  }
  expect(alloc.largestFreeRun).toBe(model.largest());
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
      const extents = alloc.allocate(op.count, { contiguous: op.contiguous });
      const blocks = blocksOf(extents);
      expect(blocks.length).toBe(op.count);
      for (const b of blocks) {
        if (model.used.has(b) || b < 0 || b >= n) throw new Error(`allocate returned used or invalid block ${b}`);
        model.used.add(b);
      }
      expect(model.used.size).toBe(n - model.free); // no duplicates
      if (largest >= op.count) {
        expect(extents.length).toBe(1);
      } else {
        // Largest first and as few extents as the largest runs allow.
        for (let i = 1; i < extents.length; i++) expect(extents[i]!.count).toBeLessThanOrEqual(extents[i - 1]!.count);
        let fewest = 0;
        for (let sum = 0; sum < op.count; fewest++) sum += runsBefore[fewest]!;
        expect(extents.length).toBe(fewest);
      }
      model.owned.push(...extents);
      return;
    }
    case 'free': {
      const e = model.takeOwned(op.pick, op.a, op.b);
      if (!e) return;
      alloc.free([e]);
      for (const b of blocksOf([e])) model.used.delete(b);
      return;
    }
    case 'freeBad': {
      if (n === 0) return;
      const b = op.block % n;
      if (model.used.has(b) && !model.reserved.has(b) && !model.staged.has(b)) return; // valid: not this op's job
      expectCode(() => alloc.free([{ start: b, count: 1 }]), 'ERR_VDE_INVALID_ARGUMENT');
      return;
    }
    case 'mark': {
      if (n === 0) return;
      const start = op.start % n;
      const len = Math.min(op.len, n - start);
      const blocks = Array.from({ length: len }, (_, k) => start + k);
      if (blocks.every((b) => !model.used.has(b))) {
        alloc.markAllocated([{ start, count: len }]);
        blocks.forEach((b) => model.used.add(b));
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
      if (!blocks.every((b) => !model.used.has(b) || model.reserved.has(b))) {
        expectCode(() => alloc.reserve({ start, count: len }), 'ERR_VDE_INVALID_ARGUMENT');
      } else if (model.reservedRangeCount(new Set(blocks)) > 64) {
        expectCode(() => alloc.reserve({ start, count: len }), 'ERR_VDE_TOO_LARGE');
      } else {
        alloc.reserve({ start, count: len });
        blocks.forEach((b) => {
          model.used.add(b);
          model.reserved.add(b);
        });
      }
      return;
    }
    case 'grow': {
      alloc.grow(n + op.by);
      model.n = n + op.by;
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
      if (model.used.has(b) && !model.reserved.has(b) && !model.staged.has(b)) return;
      expectCode(() => alloc.stageFree([{ start: b, count: 1 }], 1), 'ERR_VDE_INVALID_ARGUMENT');
      return;
    }
    case 'commit': {
      const expected = [...model.staged].filter(([, tag]) => tag <= op.upTo).map(([b]) => b).sort((x, y) => x - y);
      const released = blocksOf(alloc.commitFrees(op.upTo)).sort((x, y) => x - y);
      expect(released).toEqual(expected);
      for (const b of expected) {
        model.staged.delete(b);
        model.used.delete(b);
      }
      return;
    }
    case 'reload': {
      const image = alloc.serialize();
      expect(image.byteLength).toBe(BitmapAllocator.serializedByteLength(n));
      state.alloc = BitmapAllocator.load(image);
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
        fc.property(fc.array(opArb, { minLength: 1, maxLength: MAX_OPS }), (ops) => {
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
            expect(state.alloc.freeCount).toBe(model.free);
            expect(state.alloc.stagedCount).toBe(model.staged.size);
            if (model.n <= 64 || i % 16 === 0) compareAll(state.alloc, model);
          });
          compareAll(state.alloc, model);
          total += ops.length;
        }),
        { numRuns: RUNS_PER_SIZE },
      );
      expect(total).toBeGreaterThan(0);
    });
  }
});
