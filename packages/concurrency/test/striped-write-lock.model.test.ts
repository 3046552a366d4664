/**
 * Random interleavings of StripedWriteLock under `fc.scheduler()`: acquires and acquireMany calls, holds across
 * scheduler-chosen steps, aborts and timeouts at scheduler-chosen moments, double releases. Checked on every run:
 * - mutual exclusion per stripe (instrumented holders), and the region's stripes are the keys' distinct stripes;
 * - every request settles (no hang, no deadlock), an abort/timeout error only when that request was aborted/timed out;
 * - afterwards nothing is held or queued, every stripe can be try-locked, no timer or abort listener is left.
 * Timeouts run on fake timers whose clock the scheduler advances, so the runs are deterministic and fast.
 */
import { getEventListeners } from 'node:events';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { LockAbortedError, LockTimeoutError, StripedWriteLock, type WriteRegion } from '@vde/concurrency';
import { flushMicrotasks } from './helpers.js';

const LONG = process.env.VDE_LONG === '1';
const KEY_POOL = Array.from({ length: 12 }, (_, i) => `key-${i}`);

interface Task {
  keys: string[];
  many: boolean;
  abort: boolean;
  timeoutMs: number | null;
  holdSteps: number;
  releaseTwice: boolean;
  releaseVia: 'release' | 'dispose' | 'asyncDispose';
}

const taskArb: fc.Arbitrary<Task> = fc.record({
  keys: fc.array(fc.constantFrom(...KEY_POOL), { minLength: 1, maxLength: 4 }),
  many: fc.boolean(),
  abort: fc.integer({ min: 0, max: 3 }).map((n) => n === 0), // one request in four gets an abort
  timeoutMs: fc.option(fc.integer({ min: 0, max: 30 }), { freq: 3 }),
  holdSteps: fc.integer({ min: 0, max: 3 }),
  releaseTwice: fc.boolean(),
  releaseVia: fc.constantFrom('release', 'dispose', 'asyncDispose'),
});

/** Operations (acquires, releases, aborts, clock ticks, stale releases) of the random-interleaving test. */
let randomOps = 0;

/**
 * Releases scheduled tasks until none is left even after the microtasks ran dry, so a request still unsettled after
 * it is a real hang. (Cheaper than `s.waitIdle()`, which spins 50 microtasks between every two tasks.)
 */
/** A plain assertion for the hot loops (vitest's `expect` costs microseconds per call, and these run 100,000s). */
function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function drain(s: fc.Scheduler): Promise<void> {
  for (;;) {
    await s.waitAll();
    await flushMicrotasks(100);
    if (s.count() === 0) return;
  }
}
let totalOps = 0;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('StripedWriteLock under random interleavings', () => {
  const runs = LONG ? 10_000 : 720; // about 120,000 operations in CI

  it(`keeps exclusion, settles every request and leaks nothing (${runs} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.constantFrom(1, 2, 4, 8, 64),
        fc.array(taskArb, { minLength: 60, maxLength: 150 }),
        fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 5, maxLength: 40 }),
        async (s, stripeCount, tasks, ticks) => {
          const lock = new StripedWriteLock(stripeCount);
          const inside = new Array<number>(stripeCount).fill(0);
          const stale: WriteRegion[] = [];
          let settled = 0;
          let ops = 0;

          const runTask = async (t: Task): Promise<void> => {
            const ac = t.abort ? new AbortController() : undefined;
            const options = {
              ...(ac ? { signal: ac.signal } : {}),
              ...(t.timeoutMs !== null ? { timeoutMs: t.timeoutMs } : {}),
            };
            if (ac) {
              void s.schedule(Promise.resolve('abort')).then(() => {
                ops++;
                ac.abort(t);
              });
            }
            const start = Date.now();
            const p = t.many || t.keys.length > 1 ? lock.acquireMany(t.keys, options) : lock.acquire(t.keys[0]!, options);
            ops++;
            let region: WriteRegion;
            try {
              region = await p;
            } catch (error) {
              if (error instanceof LockAbortedError) {
                check(ac?.signal.aborted === true && error.cause === t, 'abort error without an abort');
              } else if (error instanceof LockTimeoutError) {
                check(t.timeoutMs !== null && Date.now() - start >= t.timeoutMs, 'timeout error before the timeout');
              } else {
                throw error;
              }
              if (ac) check(getEventListeners(ac.signal, 'abort').length === 0, 'abort listener left behind');
              settled++;
              return;
            }
            if (ac) check(getEventListeners(ac.signal, 'abort').length === 0, 'abort listener left behind');
            const expected = [...new Set(t.keys.map((k) => lock.stripeOf(k)))].sort((a, b) => a - b);
            check(region.stripes.join() === expected.join(), `stripes ${region.stripes.join()} != ${expected.join()}`);
            for (const stripe of region.stripes) {
              check(inside[stripe] === 0, `stripe ${stripe} has two holders`);
              inside[stripe] = 1;
            }
            for (let i = 0; i < t.holdSteps; i++) await s.schedule(Promise.resolve('hold'));
            for (const stripe of region.stripes) inside[stripe] = 0;
            if (t.releaseVia === 'release') region.release();
            else if (t.releaseVia === 'dispose') region[Symbol.dispose]();
            else await region[Symbol.asyncDispose]();
            ops++;
            if (t.releaseTwice) stale.push(region);
            settled++;
          };

          const all = tasks.map((t) => s.schedule(Promise.resolve('start')).then(() => runTask(t)));
          // Stale releases and clock ticks at random moments.
          for (const dt of ticks) {
            void s.schedule(Promise.resolve('tick')).then(() => {
              ops++;
              vi.advanceTimersByTime(dt);
              const r = stale.shift();
              if (r) {
                r.release(); // must be a no-op: it never frees the stripe its new holder has
                ops++;
              }
            });
          }
          await drain(s);
          // Holders waiting for a timeout that no tick reached are still queued: let the clock run out.
          while (settled < tasks.length && vi.getTimerCount() > 0) {
            vi.advanceTimersByTime(100);
            await drain(s);
          }
          await Promise.all(all);
          expect(settled).toBe(tasks.length);
          for (const r of stale) r.release();
          expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
          expect(vi.getTimerCount()).toBe(0);
          for (let stripe = 0; stripe < stripeCount; stripe++) {
            const key = KEY_POOL.find((k) => lock.stripeOf(k) === stripe);
            if (key !== undefined) (await lock.acquire(key, { timeoutMs: 0 })).release();
          }
          randomOps += ops;
        },
      ),
      { numRuns: runs },
    );
  }, 120_000);

  const fifoRuns = LONG ? 2_000 : 200;
  it(`grants one stripe in request order, skipping cancelled requests (${fifoRuns} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.record({ abort: fc.boolean(), holdSteps: fc.integer({ min: 0, max: 2 }) }), { minLength: 2, maxLength: 40 }),
        async (s, tasks) => {
          const lock = new StripedWriteLock(1); // every key on stripe 0
          const requested: number[] = [];
          const granted: number[] = [];
          const cancelled = new Set<number>();
          let holders = 0;
          const runTask = async (i: number): Promise<void> => {
            const ac = new AbortController();
            if (tasks[i]!.abort) void s.schedule(Promise.resolve('abort')).then(() => ac.abort());
            requested.push(i);
            totalOps++;
            const p = lock.acquire(`task-${i}`, { signal: ac.signal });
            let region: WriteRegion;
            try {
              region = await p;
            } catch (error) {
              check(error instanceof LockAbortedError, String(error));
              cancelled.add(i);
              return;
            }
            granted.push(i);
            check(++holders === 1, 'two holders of stripe 0');
            for (let k = 0; k < tasks[i]!.holdSteps; k++) await s.schedule(Promise.resolve('hold'));
            holders--;
            region.release();
            totalOps++;
          };
          const all = tasks.map((_, i) => s.schedule(Promise.resolve(i)).then(() => runTask(i)));
          await drain(s);
          expect(granted.length + cancelled.size).toBe(tasks.length); // every request settled
          await Promise.all(all);
          expect(granted).toEqual(requested.filter((i) => !cancelled.has(i)));
          expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
        },
      ),
      { numRuns: fifoRuns },
    );
  }, 60_000);

  const manyRuns = LONG ? 2_000 : 200;
  it(`acquireMany never deadlocks under random key orders (${manyRuns} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.constantFrom(2, 4, 8, 64),
        fc.array(
          fc.record({
            keys: fc.shuffledSubarray(KEY_POOL, { minLength: 1, maxLength: 6 }),
            holdSteps: fc.integer({ min: 0, max: 3 }),
          }),
          { minLength: 2, maxLength: 30 },
        ),
        async (s, stripeCount, callers) => {
          const lock = new StripedWriteLock(stripeCount);
          const inside = new Array<number>(stripeCount).fill(0);
          let done = 0;
          const runCaller = async ({ keys, holdSteps }: { keys: string[]; holdSteps: number }): Promise<void> => {
            const region = await lock.acquireMany(keys);
            totalOps++;
            for (const stripe of region.stripes) {
              check(inside[stripe] === 0, `stripe ${stripe} has two holders`);
              inside[stripe] = 1;
            }
            for (let k = 0; k < holdSteps; k++) await s.schedule(Promise.resolve('hold'));
            for (const stripe of region.stripes) inside[stripe] = 0;
            region.release();
            totalOps++;
            done++;
          };
          const all = callers.map((c) => s.schedule(Promise.resolve('start')).then(() => runCaller(c)));
          await drain(s);
          expect(done).toBe(callers.length); // every caller finished: no deadlock
          await Promise.all(all);
          expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
        },
      ),
      { numRuns: manyRuns },
    );
  }, 60_000);

  afterAll(() => {
    // The brief: at least 100,000 random operations in CI (many more under VDE_LONG=1).
    expect(randomOps).toBeGreaterThanOrEqual(LONG ? 1_000_000 : 100_000);
    expect(totalOps).toBeGreaterThan(0);
    console.log(`StripedWriteLock model: ${randomOps} random operations (+${totalOps} in the FIFO and acquireMany runs)`);
  });
});
