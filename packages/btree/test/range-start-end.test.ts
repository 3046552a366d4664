import { BTree, MemoryPageStore } from '@vde/btree';
import { describe, expect, it } from 'vitest';

const key = (i: number): Uint8Array => new TextEncoder().encode(`k${String(i).padStart(3, '0')}`);
const text = (k: Uint8Array): string => new TextDecoder().decode(k);

describe('start / end bounds', () => {
  it('start is inclusive and end exclusive, forward and backward, in entries, keys and count; bad types are refused', async () => {
    const tree = BTree.create(new MemoryPageStore(512), { cacheSizeBytes: 4096 });
    for (let i = 0; i < 300; i++) await tree.put(key(i), new Uint8Array([i & 0xff]));
    const keys = async (range: Parameters<BTree['keys']>[0]): Promise<string[]> => {
      const out: string[] = [];
      for await (const k of tree.keys(range)) out.push(text(k));
      return out;
    };
    expect(await keys({ start: key(10), end: key(14) })).toEqual(['k010', 'k011', 'k012', 'k013']);
    expect(await keys({ start: key(10), end: key(14), reverse: true, limit: 2 })).toEqual(['k013', 'k012']);
    expect(await tree.count({ start: key(100), end: key(200) })).toBe(100);
    const entries: string[] = [];
    for await (const [k] of tree.entries({ end: key(3) })) entries.push(text(k));
    expect(entries).toEqual(['k000', 'k001', 'k002']);
    // Intersected with the level-style bounds.
    expect(await keys({ start: key(10), gt: key(11), end: key(20), lte: key(13) })).toEqual(['k012', 'k013']);
    expect(await keys({ start: key(20), end: key(20) })).toEqual([]);
    expect(await keys({ prefix: new TextEncoder().encode('k29'), start: key(295) })).toEqual(['k295', 'k296', 'k297', 'k298', 'k299']);
    expect(await keys({ prefix: new TextEncoder().encode('k00'), end: key(3) })).toEqual(['k000', 'k001', 'k002']);
    expect(() => tree.keys({ start: 'k010' as never })).toThrow(/range.start must be a Uint8Array/);
    await tree.check();
  });
});
