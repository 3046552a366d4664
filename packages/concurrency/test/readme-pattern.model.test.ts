/**
 * The README's pattern under random interleavings: stores hold the `AsyncRwLock` shared and one stripe, renames hold
 * it shared and several stripes (`acquireMany`, keys in any order), checkpoints hold it exclusive; some requests are
 * try-locks, some are aborted while they wait, some abort after their grant. Checked on every run: exclusion (one
 * holder per stripe, no stripe or shared holder while an exclusive one runs), every request settles (no deadlock),
 * only aborted or try-lock requests fail, and afterwards both locks are idle with every counter back at zero.
 * Holds last a random number of microtask turns, so runs need no timers and are deterministic per seed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AsyncRwLock, LockAbortedError, LockTimeoutError, StripedWriteLock } from '@vde/concurrency';

const LONG = process.env.VDE_LONG === '1';
const KEYS = Array.from({ length: 10 }, (_, i) => `key-${i}`);

type Op =
  | { kind: 'store'; key: string; hold: number; abortAfter: number | null; tryLock: boolean }
  | { kind: 'rename'; keys: string[]; hold: number; abortAfter: number | null }
  | { kind: 'checkpoint'; hold: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('store' as const), key: fc.constantFrom(...KEYS), hold: fc.nat(4), abortAfter: fc.option(fc.nat(6), { freq: 3 }), tryLock: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('rename' as const), keys: fc.array(fc.constantFrom(...KEYS), { minLength: 0, maxLength: 4 }), hold: fc.nat(4), abortAfter: fc.option(fc.nat(6), { freq: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('checkpoint' as const), hold: fc.nat(3) }) },
);

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

describe('README pattern: gate + stripes + acquireMany + checkpoint (fast-check)', () => {
  const runs = LONG ? 3_000 : 150;
  it(`keeps exclusion, never deadlocks and returns to idle (${runs} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 24 }), fc.integer({ min: 0, max: 3 }), async (ops, log2Stripes) => {
        const stripes = new StripedWriteLock(1 << log2Stripes);
        const gate = new AsyncRwLock();
        const owner = new Map<number, number>();
        let exclusive = 0;
        let shared = 0;
        const violations: string[] = [];

        const holdStripes = async (id: number, region: { stripes: readonly number[] }, hold: number): Promise<void> => {
          if (exclusive > 0) violations.push(`op ${id} holds stripes during a checkpoint`);
          for (const s of region.stripes) {
            if (owner.has(s)) violations.push(`stripe ${s} held by ${owner.get(s)} and ${id}`);
            owner.set(s, id);
          }
          await turns(hold);
          for (const s of region.stripes) owner.delete(s);
        };

        const run = async (op: Op, id: number): Promise<void> => {
          if (op.kind === 'checkpoint') {
            await using _all = await gate.exclusive();
            if (shared > 0 || exclusive > 0) violations.push(`checkpoint ${id} beside ${shared} shared / ${exclusive} exclusive`);
            exclusive++;
            await turns(op.hold);
            exclusive--;
            return;
          }
          const ac = new AbortController();
          if (op.abortAfter !== null) void turns(op.abortAfter).then(() => ac.abort(new Error(`abort ${id}`)));
          try {
            await using _shared = await gate.shared({ signal: ac.signal });
            if (exclusive > 0) violations.push(`shared ${id} granted during a checkpoint`);
            shared++;
            try {
              const region =
                op.kind === 'store'
                  ? await stripes.acquire(op.key, op.tryLock ? { timeoutMs: 0, signal: ac.signal } : { signal: ac.signal })
                  : await stripes.acquireMany(op.keys, { signal: ac.signal });
              await using _region = region;
              await holdStripes(id, region, op.hold);
            } finally {
              shared--;
            }
          } catch (error) {
            const expected =
              (error instanceof LockAbortedError && op.abortAfter !== null) ||
              (error instanceof LockTimeoutError && op.kind === 'store' && op.tryLock);
            if (!expected) violations.push(`op ${id} failed unexpectedly: ${String(error)}`);
          }
        };

        let settled = 0;
        const all = Promise.all(ops.map((op, i) => run(op, i).finally(() => settled++)));
        // Every hold and abort is a bounded number of microtask turns, so everything settles well within this.
        await turns(ops.length * 200 + 1_000);
        expect(settled, `deadlock: ${ops.length - settled} of ${ops.length} requests never settled`).toBe(ops.length);
        await all;
        expect(violations).toEqual([]);
        expect(stripes.stats()).toMatchObject({ held: 0, waiters: 0 });
        expect(gate.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
      }),
      { numRuns: runs },
    );
  });
});
