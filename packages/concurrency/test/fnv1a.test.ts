import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { StripedWriteLock, fnv1a32 } from '@vde/concurrency';

/**
 * Reference FNV-1a, written independently of the implementation: BigInt arithmetic modulo 2^32 over UTF-16 code
 * units, as the C# original hashed `char`s.
 */
function referenceFnv1a(key: string): number {
  let hash = 2166136261n;
  for (let i = 0; i < key.length; i++) {
    hash ^= BigInt(key.charCodeAt(i));
    hash = (hash * 16777619n) % 4294967296n;
  }
  return Number(hash);
}

const vectors = [
  '',
  'a',
  'foobar',
  'object/12345',
  'ä', // 0x00e4: non-ASCII, still one code unit
  'Ω', // 0x03a9
  '日本語のキー',
  '😀', // surrogate pair d83d de00
  'a😀b',
  '\ud800', // lone high surrogate
  '\udfff', // lone low surrogate
  '\u0000',
  '\uffff',
  'x'.repeat(1000),
];

describe('fnv1a32', () => {
  it('matches the published FNV-1a values', () => {
    expect(fnv1a32('')).toBe(2166136261);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968); // from the FNV test suite
  });

  it('hashes UTF-16 code units (a surrogate pair is two units, not one code point)', () => {
    expect('😀'.length).toBe(2);
    let h = 2166136261;
    for (const unit of [0xd83d, 0xde00]) h = Math.imul(h ^ unit, 16777619) >>> 0;
    expect(fnv1a32('😀')).toBe(h);
  });

  it.each(vectors.map((v) => [JSON.stringify(v), v]))('equals the reference on %s', (_name, key) => {
    expect(fnv1a32(key)).toBe(referenceFnv1a(key));
  });

  it('equals the reference on arbitrary strings and stays an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (key) => {
        const h = fnv1a32(key);
        expect(h).toBe(referenceFnv1a(key));
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      }),
    );
  });

  it('stripeOf masks the hash with stripeCount - 1', () => {
    for (const count of [1, 2, 64, 1024]) {
      const lock = new StripedWriteLock(count);
      for (const key of vectors) expect(lock.stripeOf(key)).toBe(referenceFnv1a(key) % count);
    }
    expect(new StripedWriteLock().stripeOf('a')).toBe(0xe40c292c & 63);
  });
});
