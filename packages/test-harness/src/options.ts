/**
 * Checks of the runners' options. A runner handed a bad option rejects with `InvalidArgumentError`
 * (`ERR_VDE_INVALID_ARGUMENT`) before it starts, instead of running a different campaign than asked (a count given
 * as a string, a negative count read as "none", a fault that can never fire) or crashing half-way.
 */
import { InvalidArgumentError } from '@vde/block-device';

type Bag = Record<string, unknown>;

export function checkOptionsObject(runner: string, options: unknown): Bag {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`${runner}: options must be an object`);
  return options as Bag;
}

/** A whole number >= min (default 0); undefined is allowed when `optional`. */
export function checkCount(runner: string, o: Bag, name: string, min = 0, optional = true): void {
  const v = o[name];
  if (v === undefined && optional) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new InvalidArgumentError(`${runner}: ${name} must be a whole number >= ${min}, got ${show(v)}`);
  }
}

/** A finite number >= min; `above` makes the bound strict. */
export function checkNumber(runner: string, o: Bag, name: string, min: number, optional = true, above = false): void {
  const v = o[name];
  if (v === undefined && optional) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (above && v === min)) {
    throw new InvalidArgumentError(`${runner}: ${name} must be a number ${above ? '>' : '>='} ${min}, got ${show(v)}`);
  }
}

/** A seed: any finite number (SeededRandom hashes it). */
export function checkSeed(runner: string, o: Bag, name: string, optional: boolean): void {
  const v = o[name];
  if (v === undefined && optional) return;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new InvalidArgumentError(`${runner}: ${name} must be a finite number, got ${show(v)}`);
  }
}

export function checkString(runner: string, o: Bag, name: string): void {
  const v = o[name];
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`${runner}: ${name} must be a non-empty string, got ${show(v)}`);
}

export function checkFunction(runner: string, o: Bag, name: string): void {
  const v = o[name];
  if (v !== undefined && typeof v !== 'function') throw new InvalidArgumentError(`${runner}: ${name} must be a function, got ${show(v)}`);
}

/** A `StoreAdapter`: an object whose `open` is a function. */
export function checkAdapter(runner: string, o: Bag, name = 'adapter'): void {
  const v = o[name];
  if (v === null || typeof v !== 'object' || typeof (v as Bag).open !== 'function') {
    throw new InvalidArgumentError(`${runner}: ${name} must be a StoreAdapter (an object with open()), got ${show(v)}`);
  }
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null || typeof v === 'bigint') return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}
