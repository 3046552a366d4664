/**
 * Reads answered from memory (a cached index path) settle their promise at once. A caller that awaits one after
 * another then runs in microtasks only and the event loop never turns: timers, I/O callbacks and other requests wait
 * until the loop ends (100,000 awaited retrieves held a 1 ms timer back 700-830 ms; a list of them, 140-210 ms).
 * Once such reads have run for TURN_BUDGET_MS since the first of them (checked every 64), the next ones settle after
 * the event loop has turned (its next check phase), so it turns at least every couple of milliseconds of reads.
 * The cost is bounded by the same budget: at most one extra turn of the event loop per TURN_BUDGET_MS.
 *
 * One budget per thread (the event loop is per thread), shared by every engine and snapshot.
 */
const TURN_BUDGET_MS = 2;
let fastResults = 0;
let turnStart = 0;
/** A check-phase callback (`turned`) is scheduled: it marks the next turn of the event loop. */
let watching = false;
/** The budget of this turn is spent: reads wait for `nextTurn`. */
let spent = false;
/** Settles when the event loop next turns; what the reads beyond the budget wait for (one for all of them). */
let nextTurn: Promise<void> | undefined;
let wake: (() => void) | undefined;

function turned(): void {
  watching = false;
  spent = false;
  const w = wake;
  nextTurn = undefined;
  wake = undefined;
  w?.();
}

/** Counts one read answered from memory; true when this turn's budget is spent (the answer waits for the turn). */
function overBudget(): boolean {
  if (!watching) {
    watching = true;
    fastResults = 0;
    turnStart = performance.now();
    setImmediate(turned);
  } else if (!spent && (++fastResults & 63) === 0 && performance.now() - turnStart > TURN_BUDGET_MS) {
    spent = true;
  }
  if (spent) nextTurn ??= new Promise<void>((resolve) => (wake = resolve));
  return spent;
}

/** A promise of `value`: settled now, or once the event loop has turned when this turn's budget is spent. */
export function settledSoon<T>(value: T): Promise<T> {
  if (!overBudget()) return Promise.resolve(value);
  return nextTurn!.then(() => value);
}

/**
 * A promise rejected with `err`, on the same budget: a loop that polls for a key not stored yet (each retrieve
 * rejected with NOT_FOUND at once) must not keep the event loop from turning, or the store it waits for never
 * completes.
 */
export function rejectedSoon(err: Error): Promise<never> {
  if (!overBudget()) return Promise.reject(err);
  return nextTurn!.then(() => Promise.reject(err));
}

/**
 * Undefined while this turn's budget lasts, else a promise that settles once the event loop has turned: for a
 * read path that may complete from memory without ever waiting for I/O (a stream of a cached object).
 */
export function turnIfSpent(): Promise<void> | undefined {
  return overBudget() ? nextTurn : undefined;
}
