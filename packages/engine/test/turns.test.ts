import { describe, expect, it } from 'vitest';
import { settledSoon } from '../src/turns.js';
import { bytes, checked, collect, expectBytes, memoryEngine, turnCounter } from './helpers.js';

describe('reads answered from memory let the event loop turn', () => {
  it('settledSoon: a loop awaiting one result after another still lets the event loop turn, and every value arrives', async () => {
    const counter = turnCounter();
    const t0 = performance.now();
    let n = 0;
    // Until the event loop has turned 3 times, or 5 s: under load a fixed window may see fewer turns; a loop that
    // starves the event loop sees none, however long it runs.
    while (counter.turns() < 3 && performance.now() - t0 < 5000) {
      const v = await settledSoon({ n });
      expect(v.n).toBe(n);
      n++;
    }
    counter.stop();
    // A plain resolved promise would give 0 turns; the budget is 2 ms of reads per turn.
    expect(counter.turns()).toBeGreaterThanOrEqual(3);
  });

  it('many concurrent readers get their own values, in order, while the event loop turns', async () => {
    const counter = turnCounter();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        let last = -1;
        for (let i = 0; counter.turns() < 2 && performance.now() - t0 < 5000; i++) {
          const v = await settledSoon([w, i] as const);
          expect(v).toEqual([w, i]);
          expect(i).toBe(last + 1);
          last = i;
        }
      }),
    );
    counter.stop();
    expect(counter.turns()).toBeGreaterThanOrEqual(2);
  });

  it('retrieve, exists, stat and list from a cached index do not starve timers and I/O callbacks', async () => {
    const { vde } = await memoryEngine();
    for (let b = 0; b < 2000; b += 200) {
      await vde.batch(Array.from({ length: 200 }, (_, j) => ({ type: 'put' as const, key: `k${String(b + j).padStart(5, '0')}`, data: bytes(100, b + j) })));
    }
    const counter = turnCounter();
    const t0 = performance.now();
    let reads = 0;
    while (counter.turns() < 3 && performance.now() - t0 < 5000) {
      const i = reads % 2000;
      const key = `k${String(i).padStart(5, '0')}`;
      expectBytes(await vde.retrieve(key), bytes(100, i));
      expect(await vde.exists(key)).toBe(true);
      expect((await vde.stat(key)).size).toBe(100);
      reads++;
    }
    const afterReads = counter.turns();
    expect(afterReads).toBeGreaterThanOrEqual(3);
    const t1 = performance.now();
    let listed = 0;
    while (counter.turns() - afterReads < 3 && performance.now() - t1 < 5000) listed += (await collect(vde.list())).length;
    counter.stop();
    expect(listed % 2000).toBe(0);
    expect(counter.turns() - afterReads).toBeGreaterThanOrEqual(3);
    await checked(vde);
    await vde.close();
  });

  it('reads with a signal, snapshot reads, deletes of missing keys, empty lists and empty batches let the event loop turn', async () => {
    const { vde } = await memoryEngine();
    await vde.store('small', 'hello');
    const snap = await vde.snapshot();
    const signal = new AbortController().signal;
    const loops: [string, () => Promise<unknown>][] = [
      ['retrieve with a signal', () => vde.retrieve('small', { signal })],
      ['retrieve of a missing key with a signal', () => vde.retrieve('missing', { signal }).catch(() => undefined)],
      ['snapshot retrieve', () => snap.retrieve('small')],
      ['snapshot retrieve of a missing key', () => snap.retrieve('missing').catch(() => undefined)],
      ['snapshot exists', () => snap.exists('small')],
      ['snapshot stat', () => snap.stat('small')],
      ['delete of a missing key', () => vde.delete('missing')],
      ['empty list', () => collect(vde.list({ prefix: 'zz' }))],
      ['empty snapshot list', () => collect(snap.list({ prefix: 'zz' }))],
      ['empty batch', () => vde.batch([])],
    ];
    for (const [name, op] of loops) {
      const counter = turnCounter();
      const t0 = performance.now();
      // A loop that starves the event loop sees no turn however long it runs: 2 s is only the bound of the failure.
      while (counter.turns() < 3 && performance.now() - t0 < 2000) await op();
      counter.stop();
      expect({ name, turned: counter.turns() >= 3 }).toEqual({ name, turned: true });
    }
    expectBytes(await snap.retrieve('small'), new TextEncoder().encode('hello'));
    await snap.close();
    await checked(vde);
    await vde.close();
  });
});
