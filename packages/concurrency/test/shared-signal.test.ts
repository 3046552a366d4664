/**
 * One signal passed to many waiting requests (a server's shutdown signal on every call): the locks register one
 * abort listener per signal, not one per waiting request, so Node prints no MaxListenersExceededWarning (it did
 * from the 11th waiter on), and an abort still cancels every waiter, in the order they queued.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { AsyncRwLock, LockAbortedError, StripedWriteLock, type WriteRegion } from '@vde/concurrency';
import { keysOnStripe } from './helpers.js';

async function outcome(p: Promise<{ release(): void }>): Promise<string> {
  try {
    (await p).release();
    return 'granted';
  } catch (error) {
    return error instanceof LockAbortedError ? 'aborted' : `other: ${String(error)}`;
  }
}

describe('one signal shared by many waiters', () => {
  it('64 waiting acquires on one signal add one abort listener and no process warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const lock = new StripedWriteLock(1);
      const rw = new AsyncRwLock();
      const ac = new AbortController();
      const holder = await lock.acquire('x');
      const writer = await rw.exclusive();
      const stripeWaits = Array.from({ length: 64 }, (_, i) => lock.acquire(`k${i}`, { signal: ac.signal }));
      const manyWaits = Array.from({ length: 8 }, (_, i) => lock.acquireMany([`a${i}`, `b${i}`], { signal: ac.signal }));
      const gateWaits = Array.from({ length: 32 }, () => rw.shared({ signal: ac.signal }));
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
      // Granted waiters leave the watch; the listener goes with the last one.
      holder.release();
      writer.release();
      const results = await Promise.all([...stripeWaits, ...manyWaits, ...gateWaits].map(outcome));
      expect(results.every((r) => r === 'granted')).toBe(true);
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on a later tick
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('an abort cancels every waiter of the signal in queue order, others keep waiting', async () => {
    const lock = new StripedWriteLock(1);
    const ac = new AbortController();
    const other = new AbortController();
    const holder = await lock.acquire('x');
    const order: string[] = [];
    const track = (name: string, p: Promise<WriteRegion>): Promise<void> =>
      p.then(
        (r) => {
          order.push(`${name} granted`);
          r.release();
        },
        (e: unknown) => {
          order.push(`${name} ${e instanceof LockAbortedError && e.cause === 'stop' ? 'aborted' : String(e)}`);
        },
      );
    const all = [
      track('a', lock.acquire('a', { signal: ac.signal })),
      track('b', lock.acquire('b', { signal: other.signal })),
      track('c', lock.acquireMany(['c', 'd'], { signal: ac.signal })),
      track('d', lock.acquire('d', { signal: ac.signal, timeoutMs: 60_000 })),
    ];
    ac.abort('stop');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(1);
    expect(lock.stats()).toMatchObject({ held: 1, waiters: 1 });
    holder.release();
    await Promise.all(all);
    expect(order).toEqual(['a aborted', 'c aborted', 'd aborted', 'b granted']);
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });

  it('no request whose signal aborted while it waited is granted, even when an earlier one frees its way', async () => {
    // AsyncRwLock: the aborted exclusive waiter was what held back the shared one behind it (same signal).
    const rw = new AsyncRwLock();
    const ac = new AbortController();
    const reader = await rw.shared();
    const exclusive = outcome(rw.exclusive({ signal: ac.signal }));
    const shared = outcome(rw.shared({ signal: ac.signal }));
    const bystander = outcome(rw.shared()); // no signal: granted once the exclusive waiter is gone
    ac.abort();
    expect(await Promise.all([exclusive, shared, bystander])).toEqual(['aborted', 'aborted', 'granted']);
    reader.release();
    expect(rw.stats()).toEqual({ sharedHolders: 0, exclusiveHeld: false, waitingShared: 0, waitingExclusive: 0 });

    // StripedWriteLock: the aborted acquireMany gives back stripe 0, where a request on the same signal waits.
    const lock = new StripedWriteLock(4);
    const [k0, k0b, k0c] = keysOnStripe(lock, 0, 3);
    const [k3] = keysOnStripe(lock, 3, 1);
    const holder = await lock.acquire(k3!);
    const ac2 = new AbortController();
    const many = outcome(lock.acquireMany([k0!, k3!], { signal: ac2.signal }));
    const one = outcome(lock.acquire(k0b!, { signal: ac2.signal }));
    const other = outcome(lock.acquire(k0c!)); // no signal: gets stripe 0 after both are gone
    ac2.abort();
    expect(await Promise.all([many, one, other])).toEqual(['aborted', 'aborted', 'granted']);
    holder.release();
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0 });
  });
});
