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

/** A promise of `value`: settled now, or once the event loop has turned when this turn's budget is spent. */
export function settledSoon<T>(value: T): Promise<T> {
  if (!watching) {
    watching = true;
    fastResults = 0;
    turnStart = performance.now();
    setImmediate(turned);
  } else if (!spent && (++fastResults & 63) === 0 && performance.now() - turnStart > TURN_BUDGET_MS) {
    spent = true;
  }
  if (!spent) return Promise.resolve(value);
  nextTurn ??= new Promise<void>((resolve) => (wake = resolve));
  return nextTurn.then(() => value);
}
