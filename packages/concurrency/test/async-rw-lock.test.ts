import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import {
  AsyncRwLock,
  LockAbortedError,
  LockDisposedError,
  LockTimeoutError,
  type RwGuard,
  type RwMode,
} from '@vde/concurrency';
import { flushMicrotasks, peek } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('AsyncRwLock', () => {
  it('grants many shared holders at once, without a wasted tick', async () => {
    const rw = new AsyncRwLock();
    let first: RwGuard | undefined;
    void rw.shared().then((g) => (first = g));
    await Promise.resolve();
    expect(first?.mode).toBe('shared');
    const second = await rw.shared();
    expect(rw.stats()).toEqual({ sharedHolders: 2, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
    first!.release();
    second.release();
    expect(rw.stats().sharedHolders).toBe(0);
  });

  it('exclusive waits for shared holders and excludes everyone', async () => {
    const rw = new AsyncRwLock();
    const s1 = await rw.shared();
    const ex = rw.exclusive();
    expect(await peek(ex)).toBe('pending');
    s1.release();
    const g = await ex;
    expect(g.mode).toBe('exclusive');
    expect(rw.stats()).toMatchObject({ exclusiveHeld: true, sharedHolders: 0 });
    const s2 = rw.shared();
    const ex2 = rw.exclusive();
    expect(await peek(s2)).toBe('pending');
    expect(await peek(ex2)).toBe('pending');
    g.release();
    const gs2 = await s2;
    expect(await peek(ex2)).toBe('pending');
    gs2.release();
    (await ex2).release();
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
  });

  it('is writer-preferring: a shared request after an exclusive waiter waits behind it', async () => {
    const rw = new AsyncRwLock();
    const reader = await rw.shared();
    const order: string[] = [];
    const writer = rw.exclusive().then((g) => {
      order.push('writer');
      return g;
    });
    const lateReader = rw.shared().then((g) => {
      order.push('late reader');
      return g;
    });
    expect(await peek(lateReader)).toBe('pending'); // although only readers hold the lock
    expect(rw.stats()).toMatchObject({ sharedHolders: 1, waitingExclusive: 1, waitingShared: 1 });
    reader.release();
    const w = await writer;
    expect(await peek(lateReader)).toBe('pending');
    w.release();
    (await lateReader).release();
    expect(order).toEqual(['writer', 'late reader']);
  });

  it('an aborted exclusive waiter lets the shared requests behind it through', async () => {
    const rw = new AsyncRwLock();
    const reader = await rw.shared();
    const ac = new AbortController();
    const writer = rw.exclusive({ signal: ac.signal });
    const lateReader = rw.shared();
    expect(await peek(lateReader)).toBe('pending');
    ac.abort('no');
    const e = await rejection(writer);
    expect(e).toBeInstanceOf(LockAbortedError);
    expect((e as LockAbortedError).cause).toBe('no');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    const g = await lateReader;
    expect(rw.stats()).toMatchObject({ sharedHolders: 2, waitingExclusive: 0, waitingShared: 0 });
    g.release();
    reader.release();
  });

  it('times out, rejects an already-aborted signal, try-locks with timeoutMs 0, validates options', async () => {
    vi.useFakeTimers();
    const rw = new AsyncRwLock();
    const ex = await rw.exclusive();
    const timed = rw.shared({ timeoutMs: 20 });
    vi.advanceTimersByTime(20);
    expect(await rejection(timed)).toBeInstanceOf(LockTimeoutError);
    expect(await rejection(rw.shared({ timeoutMs: 0 }))).toBeInstanceOf(LockTimeoutError);
    expect(await rejection(rw.exclusive({ signal: AbortSignal.abort() }))).toBeInstanceOf(LockAbortedError);
    await expect(rw.shared({ timeoutMs: -1 })).rejects.toThrow(RangeError);
    await expect(rw.exclusive({ timeoutMs: NaN })).rejects.toThrow(RangeError);
    await expect(rw.exclusive({ signal: 'x' as unknown as AbortSignal })).rejects.toThrow(TypeError);
    expect(rw.stats()).toMatchObject({ exclusiveHeld: true, waitingShared: 0, waitingExclusive: 0 });
    const granted = rw.shared({ timeoutMs: 1000 });
    ex.release();
    (await granted).release();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('release is idempotent and token-checked', async () => {
    const rw = new AsyncRwLock();
    const a = await rw.exclusive();
    const bP = rw.exclusive();
    a.release();
    const b = await bP;
    a.release();
    await a[Symbol.asyncDispose]();
    a[Symbol.dispose]();
    expect(rw.stats().exclusiveHeld).toBe(true);
    const reader = rw.shared();
    expect(await peek(reader)).toBe('pending'); // the stale releases did not free b's hold
    b.release();
    const r = await reader;
    expect(rw.stats()).toMatchObject({ sharedHolders: 1, exclusiveHeld: false });
    r.release();
    b.release();
    expect(rw.stats()).toMatchObject({ sharedHolders: 0, exclusiveHeld: false });
  });

  it('shared release is counted once per guard', async () => {
    const rw = new AsyncRwLock();
    const s1 = await rw.shared();
    const s2 = await rw.shared();
    s1.release();
    s1.release();
    expect(rw.stats().sharedHolders).toBe(1);
    expect(await peek(rw.exclusive())).toBe('pending');
    s2.release();
    expect(rw.stats().exclusiveHeld).toBe(true);
  });

  it('works with `await using`', async () => {
    const rw = new AsyncRwLock();
    {
      await using g = await rw.exclusive();
      expect(g.released).toBe(false);
      expect(rw.stats().exclusiveHeld).toBe(true);
    }
    expect(rw.stats().exclusiveHeld).toBe(false);
    {
      using _g = await rw.shared();
      expect(rw.stats().sharedHolders).toBe(1);
    }
    expect(rw.stats().sharedHolders).toBe(0);
  });

  it('is not re-entrant (README "Not re-entrant"): a nested request of the same flow waits; timeoutMs turns it into an error', async () => {
    const rw = new AsyncRwLock();
    // shared -> exclusive in one flow: the exclusive request waits for the flow's own shared guard.
    const outer = await rw.shared();
    expect(await rejection(rw.exclusive({ timeoutMs: 5 }))).toBeInstanceOf(LockTimeoutError);
    // shared -> shared while an exclusive request waits: writer preference queues the nested one behind it.
    const writer = rw.exclusive();
    expect(await rejection(rw.shared({ timeoutMs: 5 }))).toBeInstanceOf(LockTimeoutError);
    outer.release();
    (await writer).release();
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
  });

  it('dispose rejects waiters and later requests; granted guards can still be released', async () => {
    const rw = new AsyncRwLock();
    const s = await rw.shared();
    const ex = rw.exclusive();
    const sh = rw.shared();
    await rw.dispose();
    for (const p of [ex, sh]) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(LockDisposedError);
      expect((e as LockDisposedError).code).toBe('ERR_LOCK_DISPOSED');
    }
    expect(await rejection(rw.shared())).toBeInstanceOf(LockDisposedError);
    expect(await rejection(rw.exclusive())).toBeInstanceOf(LockDisposedError);
    s.release();
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
    await rw[Symbol.asyncDispose]();
  });
});

describe('AsyncRwLock model (fc.scheduler)', () => {
  const runs = process.env.VDE_LONG === '1' ? 5_000 : 300;
  it(`keeps exclusion and grants strictly in request order, skipping cancelled ones (${runs} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(
          fc.record({
            mode: fc.constantFrom<RwMode>('shared', 'shared', 'exclusive'),
            abort: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
            holdSteps: fc.integer({ min: 0, max: 3 }),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        async (s, tasks) => {
          const rw = new AsyncRwLock();
          let shared = 0;
          let exclusive = 0;
          let nextSeq = 0;
          const done = new Set<number>(); // granted or cancelled requests, by sequence number
          let settled = 0;
          const fail = (msg: string): never => {
            throw new Error(msg);
          };
          const runTask = async (t: (typeof tasks)[number]): Promise<void> => {
            const ac = new AbortController();
            if (t.abort) void s.schedule(Promise.resolve('abort')).then(() => ac.abort());
            const seq = nextSeq++;
            const p = t.mode === 'shared' ? rw.shared({ signal: ac.signal }) : rw.exclusive({ signal: ac.signal });
            // Attached directly to the lock's promise: these callbacks run in the order the lock settled requests.
            const outcome = p.then(
              (g) => {
                for (let m = 0; m < seq; m++) if (!done.has(m)) fail(`request ${seq} granted before ${m}`);
                done.add(seq);
                return g;
              },
              (e: unknown) => {
                if (!(e instanceof LockAbortedError)) throw e;
                done.add(seq);
                return undefined;
              },
            );
            const g = await outcome;
            if (g === undefined) {
              settled++;
              return;
            }
            if (g.mode === 'exclusive') {
              if (exclusive !== 0 || shared !== 0) fail('exclusive granted while held');
              exclusive++;
            } else {
              if (exclusive !== 0) fail('shared granted while exclusive held');
              shared++;
            }
            for (let k = 0; k < t.holdSteps; k++) await s.schedule(Promise.resolve('hold'));
            if (g.mode === 'exclusive') exclusive--;
            else shared--;
            g.release();
            settled++;
          };
          const all = tasks.map((t) => s.schedule(Promise.resolve('start')).then(() => runTask(t)));
          for (;;) {
            await s.waitAll();
            await flushMicrotasks(100);
            if (s.count() === 0) break;
          }
          expect(settled).toBe(tasks.length); // nothing hangs
          await Promise.all(all);
          expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
        },
      ),
      { numRuns: runs },
    );
  }, 60_000);
});
