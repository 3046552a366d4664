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
});
