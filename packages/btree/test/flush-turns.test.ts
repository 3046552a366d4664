import { BTree, MemoryPageStore } from '@vde/btree';
import { describe, expect, it } from 'vitest';

const key = (i: number): Uint8Array => new TextEncoder().encode(`key${String(i).padStart(7, '0')}`);

function value(i: number): Uint8Array {
  const v = new Uint8Array(900);
  v.fill(i & 0xff);
  v[0] = i >>> 8;
  return v;
}

/** Counts turns of the event loop (check phases) until stopped. */
function turnCounter(): { turns: () => number; stop: () => void } {
  let turns = 0;
  let done = false;
  const tick = (): void => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  return { turns: () => turns, stop: () => (done = true) };
}

describe('flush and the event loop', () => {
  it('a flush of many dirty pages lets the event loop turn while it seals them, and writes the same tree', async () => {
    const store = new MemoryPageStore(4096);
    const tree = BTree.create(store, { cacheSizeBytes: 64 << 20 });
    // About 3 entries of 900 bytes per 4 KiB leaf: some 4,000 dirty pages, 16 MiB to checksum.
    const n = 12_000;
    for (let i = 0; i < n; i++) await tree.put(key(i), value(i));
    const dirty = tree.stats().dirtyPages;
    expect(dirty).toBeGreaterThan(3000);
    // A store whose writes settle at once: before, the whole flush ran without a single turn of the event loop.
    const counter = turnCounter();
    const { root } = await tree.flush();
    counter.stop();
    // One turn per MiB sealed (FLUSH_TURN_BYTES), a deterministic count: no clock involved.
    expect(counter.turns()).toBeGreaterThanOrEqual(Math.floor((dirty * 4096) / (1 << 20)) - 1);
    expect(tree.stats().dirtyPages).toBe(0);
    await tree.check();
    // What was written is the tree: a fresh open of the root reads every entry back.
    const again = await BTree.open(store, root, { cacheSizeBytes: 1 << 20 });
    for (let i = 0; i < n; i += 37) expect(await again.get(key(i))).toEqual(value(i));
    await again.check();
  });

  it('pages changed while a flush seals keep their new bytes and stay dirty for the next flush', async () => {
    const store = new MemoryPageStore(4096);
    const tree = BTree.create(store, { cacheSizeBytes: 64 << 20 });
    const n = 12_000;
    for (let i = 0; i < n; i++) await tree.put(key(i), value(i));
    let done = false;
    const flushing = tree.flush().finally(() => (done = true));
    // Runs in the turns the flush lets pass: changes pages that are lent to it, sealed or not yet.
    const changed: number[] = [];
    const changing = (async () => {
      for (let i = 0; !done && i < n; i += 97) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        await tree.put(key(i), value(i + 1));
        changed.push(i);
      }
    })();
    const { root } = await flushing;
    await changing;
    expect(changed.length).toBeGreaterThan(2);
    // The flushed image is the tree as it was when the flush began, for every key (changed since or not).
    const before = await BTree.open(store, root, { cacheSizeBytes: 1 << 20 });
    for (let i = 0; i < n; i += 97) expect(await before.get(key(i))).toEqual(value(i));
    await before.check();
    const second = await tree.flush();
    const after = await BTree.open(store, second.root, { cacheSizeBytes: 1 << 20 });
    for (const i of changed) expect(await after.get(key(i))).toEqual(value(i + 1));
    await tree.check();
  });
});
