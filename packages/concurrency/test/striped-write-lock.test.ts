import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  LockAbortedError,
  LockDisposedError,
  LockError,
  LockTimeoutError,
  StripedWriteLock,
  type WriteRegion,
} from '@vde/concurrency';
import { flushMicrotasks, keysOnStripe, keysOnTwoStripes, peek } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

/** Rejection reason of `p`, which must reject. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('StripedWriteLock construction', () => {
  it('defaults to 64 stripes', () => {
    expect(new StripedWriteLock().stripeCount).toBe(64);
    expect(new StripedWriteLock().stats()).toEqual({
      stripeCount: 64,
      held: 0,
      waiters: 0,
      acquisitions: 0,
      contended: 0,
      peakHeld: 0,
    });
  });

  it('accepts powers of two and rejects everything else with RangeError', () => {
    for (const n of [1, 2, 4, 64, 1024, 1 << 20]) expect(new StripedWriteLock(n).stripeCount).toBe(n);
    for (const n of [0, -1, -64, 3, 6, 63, 65, 1.5, 64.5, NaN, Infinity, 2 ** 21]) {
      expect(() => new StripedWriteLock(n)).toThrow(RangeError);
    }
    expect(() => new StripedWriteLock('64' as unknown as number)).toThrow(RangeError);
  });

  it('stripeOf rejects a non-string key', () => {
    expect(() => new StripedWriteLock().stripeOf(1 as unknown as string)).toThrow(TypeError);
  });
});

describe('acquire', () => {
  it('grants a free stripe without a wasted tick (the promise is already resolved)', async () => {
    const lock = new StripedWriteLock();
    let granted: WriteRegion | undefined;
    void lock.acquire('a').then((r) => (granted = r));
    await Promise.resolve(); // exactly one microtask
    expect(granted).toBeDefined();
    expect(granted!.stripes).toEqual([lock.stripeOf('a')]);
    expect(granted!.released).toBe(false);
    expect(lock.stats()).toMatchObject({ held: 1, acquisitions: 1, contended: 0, peakHeld: 1 });
    granted!.release();
    expect(granted!.released).toBe(true);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });

  it('validates its arguments', async () => {
    const lock = new StripedWriteLock();
    await expect(lock.acquire(1 as unknown as string)).rejects.toThrow(TypeError);
    await expect(lock.acquire(undefined as unknown as string)).rejects.toThrow(TypeError);
    await expect(lock.acquire('a', { timeoutMs: -1 })).rejects.toThrow(RangeError);
    await expect(lock.acquire('a', { timeoutMs: NaN })).rejects.toThrow(RangeError);
    await expect(lock.acquire('a', { timeoutMs: '5' as unknown as number })).rejects.toThrow(TypeError);
    await expect(lock.acquire('a', { signal: {} as AbortSignal })).rejects.toThrow(TypeError);
    await expect(lock.acquire('a', null as unknown as undefined)).rejects.toThrow(TypeError);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0, acquisitions: 0 });
  });

  it('queues a second holder of the same stripe and grants in FIFO order', async () => {
    const lock = new StripedWriteLock(64);
    const keys = keysOnStripe(lock, 5, 4);
    const first = await lock.acquire(keys[0]!);
    const order: number[] = [];
    const waiting = keys.slice(1).map((k, i) =>
      lock.acquire(k).then((r) => {
        order.push(i + 1);
        return r;
      }),
    );
    await flushMicrotasks();
    expect(order).toEqual([]);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 3 });
    first.release();
    const regions: WriteRegion[] = [];
    for (const p of waiting) {
      await flushMicrotasks();
      const r = await p;
      regions.push(r);
      expect(lock.stats().held).toBe(1); // exactly one holder of the stripe at any time
      r.release();
    }
    expect(order).toEqual([1, 2, 3]);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0, acquisitions: 4, contended: 3, peakHeld: 1 });
  });

  it('lets holders of different stripes overlap', async () => {
    const lock = new StripedWriteLock(64);
    const [a, b] = keysOnTwoStripes(lock);
    let inside = 0;
    let maxInside = 0;
    const writer = async (key: string): Promise<void> => {
      await using _region = await lock.acquire(key);
      inside++;
      maxInside = Math.max(maxInside, inside);
      await new Promise((resolve) => setImmediate(resolve));
      inside--;
    };
    await Promise.all([writer(a), writer(b)]);
    expect(maxInside).toBe(2);
    expect(lock.stats()).toMatchObject({ held: 0, peakHeld: 2, contended: 0 });
    lock.resetPeak();
    expect(lock.stats().peakHeld).toBe(0);
  });

  it('`await using` releases at the end of the block, also when the block throws', async () => {
    const lock = new StripedWriteLock();
    {
      await using region = await lock.acquire('k');
      expect(region.released).toBe(false);
      expect(lock.stats().held).toBe(1);
    }
    expect(lock.stats().held).toBe(0);
    await expect(
      (async () => {
        await using _region = await lock.acquire('k');
        throw new Error('boom');
      })(),
    ).rejects.toThrow('boom');
    expect(lock.stats().held).toBe(0);
    {
      using _sync = await lock.acquire('k');
      expect(lock.stats().held).toBe(1);
    }
    expect(lock.stats().held).toBe(0);
  });
});

describe('cancellation', () => {
  it('rejects at once when the signal is already aborted, even for a free stripe', async () => {
    const lock = new StripedWriteLock();
    const reason = new Error('stop');
    const error = await rejection(lock.acquire('a', { signal: AbortSignal.abort(reason) }));
    expect(error).toBeInstanceOf(LockAbortedError);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockAbortedError).code).toBe('ERR_LOCK_ABORTED');
    expect((error as LockAbortedError).cause).toBe(reason);
    expect(lock.stats()).toMatchObject({ held: 0, acquisitions: 0 });
  });

  it('an abort while queued removes the waiter; the next one in line gets the stripe', async () => {
    const lock = new StripedWriteLock();
    const [k0, k1, k2] = keysOnStripe(lock, 9, 3);
    const holder = await lock.acquire(k0!);
    const ac = new AbortController();
    const aborted = lock.acquire(k1!, { signal: ac.signal });
    const next = lock.acquire(k2!);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    expect(lock.stats().waiters).toBe(2);
    ac.abort('changed my mind');
    const error = await rejection(aborted);
    expect(error).toBeInstanceOf(LockAbortedError);
    expect((error as LockAbortedError).cause).toBe('changed my mind');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(lock.stats().waiters).toBe(1);
    holder.release();
    const r = await next;
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    r.release();
    expect(lock.stats()).toMatchObject({ held: 0, acquisitions: 2, contended: 1 });
  });

  it('keeps FIFO order when waiters leave from the tail, the middle and the head, and new ones join', async () => {
    const lock = new StripedWriteLock();
    const keys = keysOnStripe(lock, 11, 8);
    const holder = await lock.acquire(keys[0]!);
    const order: number[] = [];
    const controllers = keys.map(() => new AbortController());
    const request = (i: number): Promise<void> =>
      lock.acquire(keys[i]!, { signal: controllers[i]!.signal }).then(
        (r) => {
          order.push(i);
          r.release();
        },
        () => {
          order.push(-i);
        },
      );
    const pending = [1, 2, 3, 4].map(request);
    controllers[4]!.abort(); // the tail
    controllers[2]!.abort(); // the middle
    pending.push(request(5)); // joins behind the new tail (3)
    controllers[1]!.abort(); // the head
    pending.push(request(6));
    controllers[6]!.abort(); // the tail again
    pending.push(request(7));
    expect(lock.stats().waiters).toBe(3); // 3, 5, 7
    holder.release();
    await Promise.all(pending);
    expect(order.filter((i) => i > 0)).toEqual([3, 5, 7]);
    expect(order.filter((i) => i < 0).sort()).toEqual([-1, -2, -4, -6].sort());
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0, acquisitions: 4, contended: 3 });
  });

  it('removes the abort listener and clears the timer once granted', async () => {
    vi.useFakeTimers();
    const lock = new StripedWriteLock();
    const holder = await lock.acquire('a');
    const ac = new AbortController();
    const p = lock.acquire('a', { signal: ac.signal, timeoutMs: 10_000 });
    expect(vi.getTimerCount()).toBe(1);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    holder.release();
    const r = await p;
    expect(vi.getTimerCount()).toBe(0);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    ac.abort(); // too late: the region stays valid
    expect(r.released).toBe(false);
    expect(lock.stats().held).toBe(1);
    r.release();
  });

  it('times out a waiter with LockTimeoutError and hands the stripe on normally', async () => {
    vi.useFakeTimers();
    const lock = new StripedWriteLock();
    const holder = await lock.acquire('a');
    const slow = lock.acquire('a', { timeoutMs: 50 });
    const patient = lock.acquire('a');
    vi.advanceTimersByTime(49);
    expect(await peek(slow)).toBe('pending');
    vi.advanceTimersByTime(1);
    const error = await rejection(slow);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as LockTimeoutError).code).toBe('ERR_LOCK_TIMEOUT');
    expect(lock.stats().waiters).toBe(1);
    holder.release();
    (await patient).release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });

  it('timeoutMs 0 is a try-lock: granted if free, rejected at once if not, no timer', async () => {
    vi.useFakeTimers();
    const lock = new StripedWriteLock();
    const r = await lock.acquire('a', { timeoutMs: 0 });
    const error = await rejection(lock.acquire('a', { timeoutMs: 0 }));
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(vi.getTimerCount()).toBe(0);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    r.release();
  });

  it('Infinity and huge timeouts wait without a timer', async () => {
    vi.useFakeTimers();
    const lock = new StripedWriteLock();
    const holder = await lock.acquire('a');
    const a = lock.acquire('a', { timeoutMs: Infinity });
    const b = lock.acquire('a', { timeoutMs: 2 ** 40 });
    expect(vi.getTimerCount()).toBe(0);
    holder.release();
    (await a).release();
    (await b).release();
  });
});

describe('acquireMany', () => {
  it('holds the distinct stripes of all keys in one region, ascending', async () => {
    const lock = new StripedWriteLock(64);
    const [a, b] = keysOnTwoStripes(lock);
    const [a2] = keysOnStripe(lock, lock.stripeOf(a), 2, 'dup').filter((k) => k !== a);
    const region = await lock.acquireMany(new Set([b, a, a2!, b]));
    expect(region.stripes).toEqual([lock.stripeOf(a), lock.stripeOf(b)]);
    expect(lock.stats()).toMatchObject({ held: 2, acquisitions: 1 });
    expect(await peek(lock.acquire(a))).toBe('pending');
    region.release();
    await flushMicrotasks();
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
  });

  it('an empty key list gives an empty region', async () => {
    const lock = new StripedWriteLock();
    const region = await lock.acquireMany([]);
    expect(region.stripes).toEqual([]);
    region.release();
    expect(lock.stats().held).toBe(0);
  });

  it('validates its arguments', async () => {
    const lock = new StripedWriteLock();
    await expect(lock.acquireMany('abc')).rejects.toThrow(TypeError);
    await expect(lock.acquireMany(5 as unknown as string[])).rejects.toThrow(TypeError);
    await expect(lock.acquireMany(['a', 3 as unknown as string])).rejects.toThrow(TypeError);
    await expect(lock.acquireMany(['a'], { timeoutMs: -5 })).rejects.toThrow(RangeError);
    // An iterable that fails while being read: the promise rejects with its error (nothing throws at the call),
    // and nothing is held.
    const failing = {
      *[Symbol.iterator](): Iterator<string> {
        yield 'a';
        throw new Error('boom');
      },
    };
    let pending: Promise<unknown> | undefined;
    expect(() => (pending = lock.acquireMany(failing))).not.toThrow();
    await expect(pending).rejects.toThrow('boom');
    expect(lock.stats().held).toBe(0);
  });

  it('gives back the stripes it already holds when aborted while waiting for a later one', async () => {
    const lock = new StripedWriteLock(64);
    const [low, high] = keysOnTwoStripes(lock);
    const blocker = await lock.acquire(high);
    const ac = new AbortController();
    const many = lock.acquireMany([high, low], { signal: ac.signal });
    await flushMicrotasks();
    // `low` (the lower stripe) is taken, `high` is awaited.
    expect(lock.stats()).toMatchObject({ held: 2, waiters: 1 });
    const lowWaiter = lock.acquire(low);
    expect(await peek(lowWaiter)).toBe('pending');
    ac.abort();
    expect(await rejection(many)).toBeInstanceOf(LockAbortedError);
    const r = await lowWaiter; // the partly held stripe went to the next in line
    expect(lock.stats()).toMatchObject({ held: 2, waiters: 0 });
    r.release();
    blocker.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });

  it('gives back partly held stripes on timeout and on try-lock failure', async () => {
    vi.useFakeTimers();
    const lock = new StripedWriteLock(64);
    const [low, high] = keysOnTwoStripes(lock);
    const blocker = await lock.acquire(high);
    const timed = lock.acquireMany([low, high], { timeoutMs: 5 });
    expect(lock.stats().held).toBe(2);
    vi.advanceTimersByTime(5);
    expect(await rejection(timed)).toBeInstanceOf(LockTimeoutError);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    expect(await rejection(lock.acquireMany([low, high], { timeoutMs: 0 }))).toBeInstanceOf(LockTimeoutError);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    blocker.release();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('two callers naming the same keys in opposite orders both finish', async () => {
    const lock = new StripedWriteLock(64);
    const [a, b] = keysOnTwoStripes(lock);
    const done: string[] = [];
    const run = async (name: string, keys: string[]): Promise<void> => {
      for (let i = 0; i < 50; i++) {
        await using _r = await lock.acquireMany(keys);
        await new Promise((resolve) => setImmediate(resolve));
      }
      done.push(name);
    };
    await Promise.all([run('ab', [a, b]), run('ba', [b, a]), run('a', [a]), run('b', [b])]);
    expect(done.sort()).toEqual(['a', 'ab', 'b', 'ba']);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });
});

describe('release tokens', () => {
  it('a second release after someone else got the stripe does not free it', async () => {
    const lock = new StripedWriteLock();
    const first = await lock.acquire('k');
    const secondP = lock.acquire('k');
    first.release();
    const second = await secondP;
    first.release(); // stale: must not free `second`'s stripe
    first[Symbol.dispose]();
    await first[Symbol.asyncDispose]();
    expect(second.released).toBe(false);
    expect(lock.stats().held).toBe(1);
    const third = lock.acquire('k');
    expect(await peek(third)).toBe('pending');
    second.release();
    second.release();
    const r3 = await third;
    expect(lock.stats().held).toBe(1);
    r3.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0, acquisitions: 3 });
  });

  it('a stale region of an acquireMany does not free stripes that moved on', async () => {
    const lock = new StripedWriteLock(64);
    const [a, b] = keysOnTwoStripes(lock);
    const many = await lock.acquireMany([a, b]);
    const nextA = lock.acquire(a);
    many.release();
    const ra = await nextA;
    many.release();
    expect(lock.stats().held).toBe(1);
    expect(ra.released).toBe(false);
    ra.release();
  });
});

describe('dispose', () => {
  it('rejects every waiter, refuses new acquires, lets granted regions be released', async () => {
    const lock = new StripedWriteLock(64);
    const [low, high] = keysOnTwoStripes(lock);
    const held = await lock.acquire(high);
    const w1 = lock.acquire(high);
    const w2 = lock.acquireMany([low, high]); // holds `low`, waits for `high`
    await flushMicrotasks();
    expect(lock.stats()).toMatchObject({ held: 2, waiters: 2 });
    await lock[Symbol.asyncDispose]();
    for (const p of [w1, w2]) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(LockDisposedError);
      expect((e as LockDisposedError).code).toBe('ERR_LOCK_DISPOSED');
    }
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    expect(await rejection(lock.acquire(low))).toBeInstanceOf(LockDisposedError);
    expect(await rejection(lock.acquireMany([low]))).toBeInstanceOf(LockDisposedError);
    held.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
    await lock.dispose(); // twice: harmless
    await lock[Symbol.asyncDispose]();
  });

  it('works with `await using` on the lock and clears waiter timers', async () => {
    vi.useFakeTimers();
    let pending: Promise<unknown> | undefined;
    {
      await using lock = new StripedWriteLock();
      await lock.acquire('k');
      pending = lock.acquire('k', { timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(vi.getTimerCount()).toBe(1);
    }
    expect(await pending).toBeInstanceOf(LockDisposedError);
    expect(vi.getTimerCount()).toBe(0);
  });
});
