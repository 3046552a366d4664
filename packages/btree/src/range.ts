import { InvalidArgumentError } from '@vde/block-device';
import { compareKeys } from './format.js';

/** Level-style bounds; all optional, unsigned byte order. `prefix` is intersected with the other bounds. */
export interface KeyRange {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  prefix?: Uint8Array;
  /** First key, inclusive (the same as `gte`; intersected with the others). */
  start?: Uint8Array;
  /** End key, exclusive (the same as `lt`; intersected with the others). */
  end?: Uint8Array;
  reverse?: boolean;
  /** Maximum number of results; `undefined` or negative = no limit. */
  limit?: number;
}

/** A range reduced to one lower and one upper bound. */
export interface Bounds {
  lo: Uint8Array | null;
  loInclusive: boolean;
  hi: Uint8Array | null;
  hiInclusive: boolean;
  reverse: boolean;
  limit: number;
  empty: boolean;
}

function bytes(name: string, v: unknown): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) throw new InvalidArgumentError(`range.${name} must be a Uint8Array`);
  return v;
}

/** Smallest key greater than every key that starts with `prefix`, or null when there is none (all 0xff). */
function prefixEnd(prefix: Uint8Array): Uint8Array | null {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i]!++;
      return end;
    }
  }
  return null;
}

export function toBounds(range: KeyRange | undefined): Bounds {
  const r = range === undefined ? {} : range;
  if (typeof r !== 'object' || r === null) throw new InvalidArgumentError('range must be an object');
  const gt = bytes('gt', r.gt);
  const gte = bytes('gte', r.gte);
  const lt = bytes('lt', r.lt);
  const lte = bytes('lte', r.lte);
  const prefix = bytes('prefix', r.prefix);
  const startKey = bytes('start', r.start);
  const endKey = bytes('end', r.end);
  const limitIn = r.limit;
  if (limitIn !== undefined && (typeof limitIn !== 'number' || !(Number.isInteger(limitIn) || limitIn === Infinity))) {
    throw new InvalidArgumentError(`range.limit must be an integer (negative: no limit), got ${String(limitIn)}`);
  }
  if (r.reverse !== undefined && typeof r.reverse !== 'boolean') {
    throw new InvalidArgumentError(`range.reverse must be a boolean, got ${String(r.reverse)}`);
  }
  const b: Bounds = {
    lo: null,
    loInclusive: true,
    hi: null,
    hiInclusive: true,
    reverse: r.reverse === true,
    limit: limitIn === undefined || limitIn < 0 ? Infinity : Math.floor(limitIn),
    empty: false,
  };
  const raiseLo = (k: Uint8Array, inclusive: boolean): void => {
    const c = b.lo === null ? 1 : compareKeys(k, b.lo);
    if (c > 0 || (c === 0 && !inclusive)) {
      b.lo = k;
      b.loInclusive = inclusive;
    }
  };
  const lowerHi = (k: Uint8Array, inclusive: boolean): void => {
    const c = b.hi === null ? -1 : compareKeys(k, b.hi);
    if (c < 0 || (c === 0 && !inclusive)) {
      b.hi = k;
      b.hiInclusive = inclusive;
    }
  };
  if (gte) raiseLo(gte, true);
  if (gt) raiseLo(gt, false);
  if (lte) lowerHi(lte, true);
  if (lt) lowerHi(lt, false);
  if (startKey) raiseLo(startKey, true);
  if (endKey) lowerHi(endKey, false);
  if (prefix && prefix.length > 0) {
    raiseLo(prefix, true);
    const end = prefixEnd(prefix);
    if (end) lowerHi(end, false);
  }
  if (b.lo !== null && b.hi !== null) {
    const c = compareKeys(b.lo, b.hi);
    if (c > 0 || (c === 0 && !(b.loInclusive && b.hiInclusive))) b.empty = true;
  }
  if (b.limit === 0) b.empty = true;
  return b;
}
