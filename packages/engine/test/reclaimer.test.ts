import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Reclaimer } from '../src/reclaimer.js';

describe('Reclaimer (DESIGN.md invariant 4)', () => {
  it('frees only after a newer checkpoint, with no older reader or snapshot holding the blocks', () => {
    const r = new Reclaimer();
    const reader = r.beginRead();
    r.defer([{ start: 10, count: 2 }], 1);
    expect(r.takeEligible(1)).toEqual([]); // the durable checkpoint 1 may still reference them
    expect(r.takeEligible(2)).toEqual([]); // a reader that started before the free is running
    r.endRead(reader);
    r.holdSnapshot(1);
    expect(r.takeEligible(2)).toEqual([]); // snapshot of generation 1 may read them
    r.releaseSnapshot(1);
    expect(r.takeEligible(2)).toEqual([{ start: 10, count: 2 }]);
    expect(r.pendingBlocks).toBe(0);
  });

  it('matches a brute-force model over random operations', () => {
    type Op = { t: 'defer'; n: number } | { t: 'begin' } | { t: 'end'; i: number } | { t: 'hold' } | { t: 'release'; i: number } | { t: 'ckpt' } | { t: 'take' };
    const op = fc.oneof(
      fc.record({ t: fc.constant('defer' as const), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ t: fc.constant('begin' as const) }),
      fc.record({ t: fc.constant('end' as const), i: fc.nat() }),
      fc.record({ t: fc.constant('hold' as const) }),
      fc.record({ t: fc.constant('release' as const), i: fc.nat() }),
      fc.record({ t: fc.constant('ckpt' as const) }),
      fc.record({ t: fc.constant('take' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op as fc.Arbitrary<Op>, { maxLength: 200 }), (ops) => {
        const r = new Reclaimer();
        let gen = 1;
        let seq = 0;
        let block = 0;
        const readers: number[] = [];
        const snaps: number[] = [];
        let model: { start: number; gen: number; seq: number }[] = [];
        for (const o of ops) {
          if (o.t === 'defer') {
            const ext = Array.from({ length: o.n }, () => ({ start: block++, count: 1 }));
            r.defer(ext, gen);
            for (const e of ext) model.push({ start: e.start, gen, seq });
            seq++;
          } else if (o.t === 'begin') readers.push(r.beginRead());
          else if (o.t === 'end' && readers.length > 0) r.endRead(readers.splice(o.i % readers.length, 1)[0]!);
          else if (o.t === 'hold') {
            r.holdSnapshot(gen);
            snaps.push(gen);
          } else if (o.t === 'release' && snaps.length > 0) r.releaseSnapshot(snaps.splice(o.i % snaps.length, 1)[0]!);
          else if (o.t === 'ckpt') gen++;
          else if (o.t === 'take') {
            const got = r.takeEligible(gen).map((e) => e.start);
            const free = (m: { gen: number; seq: number }) =>
              m.gen < gen && snaps.every((s) => s > m.gen) && readers.every((rd) => rd > m.seq);
            // Everything taken must be free to reuse; the model's free entries form a prefix that is taken whole.
            let prefix = 0;
            while (prefix < model.length && free(model[prefix]!)) prefix++;
            expect(got).toEqual(model.slice(0, prefix).map((m) => m.start));
            model = model.slice(prefix);
          }
        }
        expect(r.pendingBlocks).toBe(model.length);
      }),
      { numRuns: 300 },
    );
  });
});
