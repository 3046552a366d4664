import { describe, expect, it } from 'vitest';
import { BTree, MemoryPageStore } from '@vde/btree';

/**
 * A leaf under its minimum fill that cannot merge takes entries from a sibling; the new separator between them can
 * be longer than the old one, and when the parent has no room for the longer key the parent is rebuilt (and may
 * split) instead of being edited in place. Keys with long shared prefixes and short, varying suffixes on 512-byte
 * pages make separator lengths vary a lot. With this generator, seeds 8, 25, 26, 29 and 40 of 1..40 reach that
 * rebuild (found with temporary instrumentation of `#rebuild`; a change of the split policy may move them, the
 * checks below hold for every seed).
 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PREFIXES = ['', 'a'.repeat(40), 'a'.repeat(40) + 'b'.repeat(30), 'c'.repeat(60)];

describe('redistribution with separators of changing length', () => {
  it('keeps every entry and a valid tree through 3,000 puts and deletes per seed (40 seeds)', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const tree = BTree.create(new MemoryPageStore(512));
      const model = new Map<string, number>();
      const mk = (): string => PREFIXES[Math.floor(r() * PREFIXES.length)]! + Math.floor(r() * 5000).toString(36).padStart(Math.floor(r() * 8) + 1, '0');
      for (let i = 1; i <= 3000; i++) {
        const k = mk();
        if (r() < 0.6) {
          const len = Math.floor(r() * 30);
          await tree.put(Buffer.from(k), new Uint8Array(len).fill(i & 0xff));
          model.set(k, len);
        } else {
          const keys = [...model.keys()];
          if (keys.length > 0) {
            const dk = keys[Math.floor(r() * keys.length)]!;
            expect(await tree.delete(Buffer.from(dk)), `seed ${seed}: delete of ${dk}`).toBeDefined();
            model.delete(dk);
          }
        }
        if (i % 1000 === 0) await tree.check();
      }
      const got: string[] = [];
      for await (const [k, v] of tree.entries()) got.push(`${Buffer.from(k).toString()}:${v.length}`);
      const want = [...model.entries()].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))).map(([k, n]) => `${k}:${n}`);
      expect(got, `seed ${seed}`).toEqual(want);
      for (const [k, n] of model) expect((await tree.get(Buffer.from(k)))?.length, `seed ${seed}: get ${k}`).toBe(n);
    }
  });
});
