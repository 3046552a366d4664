import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromVdeKey, mappedKeyBytes, maxLevelKeyBytes, toVdeKey, toVdeRange } from '../src/key-codec.js';
import { LONG, compareBytes } from './helpers.js';

const utf8 = new TextEncoder();
const RUNS = LONG ? 100_000 : 2_000;
const sign = (n: number): number => Math.sign(n);
const key = fc.uint8Array({ maxLength: 40 });
/** Keys that share prefixes often, so the prefix cases of the order property are exercised. */
const nearKey = fc.array(fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xbf, 0xc0, 0xff), { maxLength: 6 }).map((a) => Uint8Array.from(a));

describe('key mapping', () => {
  it('preserves order: UTF-8 bytes of mapped keys compare like the level keys', () => {
    fc.assert(
      fc.property(fc.oneof(key, nearKey), fc.oneof(key, nearKey), (a, b) => {
        const byUtf8 = compareBytes(utf8.encode(toVdeKey(a)), utf8.encode(toVdeKey(b)));
        expect(sign(byUtf8)).toBe(sign(compareBytes(a, b)));
        // JavaScript string order agrees too (the codec compares bounds that way).
        const byString = toVdeKey(a) < toVdeKey(b) ? -1 : toVdeKey(a) > toVdeKey(b) ? 1 : 0;
        expect(byString).toBe(sign(compareBytes(a, b)));
      }),
      { numRuns: RUNS },
    );
  });

  it('round-trips and has the documented length', () => {
    fc.assert(
      fc.property(key, (a) => {
        const k = toVdeKey(a);
        expect(fromVdeKey(k)).toEqual(a);
        expect(utf8.encode(k).byteLength).toBe(mappedKeyBytes(a.byteLength));
        // no lone surrogates: the mapped key is a valid VDE key (all code points are below U+0200)
        expect([...k].every((c) => c.codePointAt(0)! < 0x200)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('maps the empty key and every byte value', () => {
    expect(toVdeKey(new Uint8Array(0))).toBe('L');
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(fromVdeKey(toVdeKey(all))).toEqual(all);
    expect(utf8.encode(toVdeKey(all)).byteLength).toBe(513);
  });

  it('rejects keys outside the level key space', () => {
    expect(fromVdeKey('other')).toBeUndefined();
    expect(fromVdeKey('Labc')).toBeUndefined();
    expect(fromVdeKey('L\u0200')).toBeUndefined();
  });

  it('computes the key length limit from the engine limit', () => {
    expect(maxLevelKeyBytes(1024)).toBe(511);
    expect(maxLevelKeyBytes(1012)).toBe(505);
    expect(mappedKeyBytes(maxLevelKeyBytes(1012))).toBeLessThanOrEqual(1012);
    expect(mappedKeyBytes(maxLevelKeyBytes(1012) + 1)).toBeGreaterThan(1012);
  });

  it('translates ranges: a key is in the level range iff its mapped key is in [start, end)', () => {
    const bound = fc.option(fc.oneof(key, nearKey), { nil: undefined });
    fc.assert(
      fc.property(fc.oneof(key, nearKey), bound, bound, bound, bound, (k, gt, gte, lt, lte) => {
        const r = toVdeRange({ gt, gte, lt, lte });
        const m = toVdeKey(k);
        const inVde = m >= r.start && m < r.end;
        // level semantics: gte wins over gt, lte over lt
        const lowOk = gte !== undefined ? compareBytes(k, gte) >= 0 : gt !== undefined ? compareBytes(k, gt) > 0 : true;
        const highOk = lte !== undefined ? compareBytes(k, lte) <= 0 : lt !== undefined ? compareBytes(k, lt) < 0 : true;
        expect(inVde).toBe(lowOk && highOk);
      }),
      { numRuns: RUNS },
    );
  });
});
