import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Portable } from '../src/index.js';

describe('crc32', () => {
  it('matches the known check value', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Portable(check)).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('an empty view continues the running value, whatever buffer is behind it', () => {
    const running = crc32(new TextEncoder().encode('abc'));
    // Node 20's zlib.crc32 returned 0 for an empty view over a zero-length ArrayBuffer.
    for (const empty of [new Uint8Array(0), new Uint8Array(new ArrayBuffer(0)), new TextEncoder().encode(''), new Uint8Array(8).subarray(3, 3)]) {
      expect(crc32(empty, running)).toBe(running);
      expect(crc32Portable(empty, running)).toBe(running);
      expect(crc32(empty)).toBe(0);
    }
  });

  it('native and portable agree on random data, also when continued', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.uint8Array({ maxLength: 512 }), (a, b) => {
        const whole = new Uint8Array(a.length + b.length);
        whole.set(a);
        whole.set(b, a.length);
        const native = crc32(whole);
        expect(crc32Portable(whole)).toBe(native);
        expect(crc32(b, crc32(a))).toBe(native);
        expect(crc32Portable(b, crc32Portable(a))).toBe(native);
      }),
      { numRuns: process.env.VDE_LONG ? 20_000 : 300 },
    );
  });
});
