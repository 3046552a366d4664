import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32 } from '@vde/block-device';
import { encodeKey, encodeKeyScratch } from '../src/keys.js';
import { SMALL_CRC_BYTES, crc32Small, encodeRecord, verifiedInlineData } from '../src/record.js';
import { bytes, expectBytes, expectCode, memoryEngine } from './helpers.js';

/**
 * The synchronous part of retrieve/stat/exists: keys encoded into shared scratch arrays, and the CRC-32 of small
 * inline values computed in JavaScript. Both must give exactly what the general code gives.
 */
describe('read fast path', () => {
  it('crc32Small equals crc32 for every length, offset and content', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.nat(), fc.nat(), (a, x, y) => {
        const off = a.length === 0 ? 0 : x % a.length;
        const len = a.length - off === 0 ? 0 : y % (a.length - off + 1);
        expect(crc32Small(a, off, len)).toBe(crc32(a.subarray(off, off + len)));
      }),
      { numRuns: 2000 },
    );
    const ff = new Uint8Array(300).fill(0xff);
    for (let n = 0; n <= 300; n++) expect(crc32Small(ff, 0, n)).toBe(crc32(ff.subarray(0, n)));
  });

  it('verifiedInlineData accepts an intact inline record and rejects any flipped bit of its data or checksum', () => {
    for (const size of [0, 1, 7, 8, 9, 100, SMALL_CRC_BYTES, SMALL_CRC_BYTES + 1, 700]) {
      const data = bytes(size, size + 3);
      const metadata = size % 2 === 0 ? new Uint8Array(0) : new TextEncoder().encode('{"a":"b"}');
      const rec = encodeRecord({ size, createdMs: 1, modifiedMs: 2, crc: crc32(data), nonce: 5, metadata, inline: data });
      // At an offset inside a larger array, as a view of a leaf page is.
      const page = new Uint8Array(rec.length + 40);
      page.set(rec, 17);
      const view = page.subarray(17, 17 + rec.length);
      expectBytes(verifiedInlineData(view)!, data);
      const dataStart = rec.length - size;
      for (let i = 0; i < size; i += Math.max(1, size >> 3)) {
        const bad = view.slice();
        bad[dataStart + i] = bad[dataStart + i]! ^ (1 << (i % 8));
        expect(verifiedInlineData(bad)).toBeUndefined();
      }
      const badCrc = view.slice();
      badCrc[25] = badCrc[25]! ^ 0x80;
      expect(verifiedInlineData(badCrc)).toBeUndefined();
    }
  });

  it('encodeKeyScratch gives the bytes and errors of encodeKey', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 0, maxLength: 80 }), fc.integer({ min: 1, max: 100 }), (s, limit) => {
        let want: Uint8Array | string;
        try {
          want = Buffer.from(encodeKey(s, limit)).toString('hex');
        } catch (err) {
          want = (err as { code: string }).code;
        }
        let got: Uint8Array | string;
        try {
          got = Buffer.from(encodeKeyScratch(s, limit)).toString('hex');
        } catch (err) {
          got = (err as { code: string }).code;
        }
        expect(got).toBe(want);
      }),
      { numRuns: 3000 },
    );
    expect(() => encodeKeyScratch(7, 10)).toThrow(expect.objectContaining({ code: 'ERR_VDE_INVALID_KEY' }) as Error);
  });

  it('retrieve, stat and exists of keys of the same length, interleaved, each get their own object', async () => {
    const { vde } = await memoryEngine();
    const keys: string[] = [];
    for (let len = 1; len <= 70; len++) for (const c of 'abc') keys.push(c.repeat(len));
    keys.push('é'.repeat(5), 'x'.repeat(300));
    for (const [i, k] of keys.entries()) await vde.store(k, bytes(50 + (i % 150), i + 1));
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(keys.map((k) => vde.retrieve(k)));
      got.forEach((g, i) => expectBytes(g, bytes(50 + (i % 150), i + 1)));
      const infos = await Promise.all(keys.map((k) => vde.stat(k)));
      infos.forEach((info, i) => expect(info).toMatchObject({ key: keys[i], size: 50 + (i % 150) }));
      expect(await Promise.all(keys.map((k) => vde.exists(k)))).toEqual(keys.map(() => true));
      expect(await Promise.all(keys.map((k) => vde.exists(`${k}?`)))).toEqual(keys.map(() => false));
      await expectCode(vde.retrieve('zz'), 'ERR_VDE_NOT_FOUND');
    }
    await vde.close();
  });
});
