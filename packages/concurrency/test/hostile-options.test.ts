/**
 * Options and keys that run caller code while being read (getters, proxies, look-alike signals). The README
 * promises that bad arguments reject (nothing throws synchronously) and that a request that failed never holds the
 * lock later. A signal whose `addEventListener` throws used to leave its request queued: it was granted later to
 * nobody and held its stripe (or a shared hold of the AsyncRwLock) forever.
 */
import { describe, expect, it } from 'vitest';
import { AsyncRwLock, StripedWriteLock, type AcquireOptions } from '@vde/concurrency';
import { keysOnStripe } from './helpers.js';

/** Calls `f`; a synchronous throw fails the test, a rejection is returned. */
async function rejectionOf(f: () => Promise<unknown>): Promise<unknown> {
  let p: Promise<unknown>;
  try {
    p = f();
  } catch (error) {
    throw new Error(`threw synchronously instead of rejecting: ${String(error)}`);
  }
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** An AbortSignal look-alike (accepted as one) whose `addEventListener` throws. */
function refusingSignal(): AbortSignal {
  return {
    aborted: false,
    reason: undefined,
    addEventListener() {
      throw new Error('no listeners here');
    },
    removeEventListener() {},
  } as unknown as AbortSignal;
}

const boom = (): never => {
  throw new Error('getter boom');
};

const hostileOptions: [string, () => unknown][] = [
  ['a throwing signal getter', () => ({ get signal() { return boom(); } })],
  ['a throwing timeoutMs getter', () => ({ get timeoutMs() { return boom(); } })],
  ['a proxy that throws on every read', () => new Proxy({}, { get: boom })],
  ['a revoked proxy', () => { const r = Proxy.revocable({}, {}); r.revoke(); return r.proxy; }],
  ['a fake AbortSignal (its aborted getter throws)', () => ({ signal: Object.create(AbortSignal.prototype) as AbortSignal })],
];

describe('hostile options and keys', () => {
  it.each(hostileOptions)('acquire, acquireMany, shared and exclusive reject %s with a TypeError', async (_, make) => {
    const lock = new StripedWriteLock(4);
    const rw = new AsyncRwLock();
    const calls: (() => Promise<unknown>)[] = [
      () => lock.acquire('k', make() as AcquireOptions),
      () => lock.acquireMany(['k', 'j'], make() as AcquireOptions),
      () => rw.shared(make() as AcquireOptions),
      () => rw.exclusive(make() as AcquireOptions),
    ];
    for (const call of calls) expect(await rejectionOf(call)).toBeInstanceOf(TypeError);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
  });

  it('acquireMany rejects keys whose iterator getter throws', async () => {
    const lock = new StripedWriteLock(4);
    const keys = { get [Symbol.iterator](): () => Iterator<string> { return boom(); } } as Iterable<string>;
    expect(await rejectionOf(() => lock.acquireMany(keys))).toBeInstanceOf(Error);
    expect(await rejectionOf(() => lock.acquireMany(new Proxy([], { get: boom })))).toBeInstanceOf(Error);
  });

  it('a queued acquire whose signal refuses the listener rejects and never holds the stripe later', async () => {
    const lock = new StripedWriteLock(4);
    const holder = await lock.acquire('k');
    const error = await rejectionOf(() => lock.acquire('k', { signal: refusingSignal() }));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).cause).toEqual(new Error('no listeners here'));
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    holder.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
    const next = await lock.acquire('k', { timeoutMs: 0 }); // free: the failed request took nothing
    next.release();
  });

  it('a queued acquireMany whose signal refuses the listener gives back the stripes it took', async () => {
    const lock = new StripedWriteLock(4);
    const [low] = keysOnStripe(lock, 0, 1);
    const [high] = keysOnStripe(lock, 3, 1);
    const holder = await lock.acquire(high!); // acquireMany takes stripe 0, then queues on stripe 3
    const error = await rejectionOf(() => lock.acquireMany([low!, high!], { signal: refusingSignal() }));
    expect(error).toBeInstanceOf(TypeError);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    (await lock.acquire(low!, { timeoutMs: 0 })).release(); // stripe 0 was given back
    holder.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });

  it('a queued AsyncRwLock request whose signal refuses the listener rejects and never holds the lock later', async () => {
    const rw = new AsyncRwLock();
    const writer = await rw.exclusive();
    expect(await rejectionOf(() => rw.shared({ signal: refusingSignal() }))).toBeInstanceOf(TypeError);
    expect(await rejectionOf(() => rw.exclusive({ signal: refusingSignal() }))).toBeInstanceOf(TypeError);
    writer.release();
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });
    (await rw.exclusive({ timeoutMs: 0 })).release(); // nobody holds it
  });

  it('a signal whose removeEventListener throws does not break the grant or the release', async () => {
    const lock = new StripedWriteLock(4);
    const listeners: (() => void)[] = [];
    const signal = {
      aborted: false,
      reason: undefined,
      addEventListener(_: string, f: () => void) {
        listeners.push(f);
      },
      removeEventListener() {
        throw new Error('cannot remove');
      },
    } as unknown as AbortSignal;
    const holder = await lock.acquire('k');
    const waiting = lock.acquire('k', { signal });
    expect(() => holder.release()).not.toThrow(); // hands the stripe over, disarming the waiter
    const region = await waiting;
    for (const f of listeners) f(); // a late abort event: no effect on the granted region
    expect(region.released).toBe(false);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 0 });
    region.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });
});
