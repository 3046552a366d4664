import type { StripedWriteLock } from '@vde/concurrency';

/** `count` distinct keys that all map to `stripe` (found by scanning `${prefix}${i}`). */
export function keysOnStripe(lock: StripedWriteLock, stripe: number, count: number, prefix = 'k'): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = `${prefix}${i}`;
    if (lock.stripeOf(key) === stripe) keys.push(key);
  }
  return keys;
}

/** Two keys on different stripes, the first on the lower stripe. */
export function keysOnTwoStripes(lock: StripedWriteLock): [string, string] {
  const a = 'alpha';
  for (let i = 0; ; i++) {
    const b = `beta${i}`;
    if (lock.stripeOf(b) !== lock.stripeOf(a)) return lock.stripeOf(a) < lock.stripeOf(b) ? [a, b] : [b, a];
  }
}

/** Lets every queued microtask (and the ones they queue) run, without touching timers. */
export async function flushMicrotasks(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** Resolves to 'pending' if `p` has not settled after the microtasks run, else to its outcome. */
export async function peek<T>(p: Promise<T>): Promise<'pending' | { value: T } | { error: unknown }> {
  let outcome: 'pending' | { value: T } | { error: unknown } = 'pending';
  p.then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  await flushMicrotasks();
  return outcome;
}
