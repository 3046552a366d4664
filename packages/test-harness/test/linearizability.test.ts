import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HistoryRecorder, SeededRandom, checkLinearizable, type HistoryEvent, type KvOp, type KvResult } from '@vde/test-harness';

/** A compact history builder: h.op(start, end, op, result); end undefined = pending. */
function history(): { events: HistoryEvent[]; op(start: number, end: number | undefined, op: KvOp, result?: KvResult): void } {
  const events: HistoryEvent[] = [];
  let id = 0;
  return {
    events,
    op(start, end, op, result) {
      id++;
      events.push({ type: 'invoke', id, time: start, op });
      if (end !== undefined) events.push({ type: 'ok', id, time: end, result });
    },
  };
}

const put = (value: string, key = 'k'): KvOp => ({ f: 'put', key, value });
const get = (key = 'k'): KvOp => ({ f: 'get', key });
const del = (key = 'k'): KvOp => ({ f: 'delete', key });

describe('checkLinearizable accepts linearizable histories', () => {
  it('sequential puts, gets and deletes', () => {
    const h = history();
    h.op(1, 2, put('a'));
    h.op(3, 4, get(), 'a');
    h.op(5, 6, del(), true);
    h.op(7, 8, get(), null);
    h.op(9, 10, del(), false);
    expect(checkLinearizable(h.events)).toMatchObject({ verdict: 'ok', keys: 1 });
  });

  it('a read overlapping a put may see either value', () => {
    for (const seen of ['a', 'b']) {
      const h = history();
      h.op(1, 2, put('a'));
      h.op(3, 6, put('b'));
      h.op(4, 5, get(), seen);
      expect(checkLinearizable(h.events).verdict).toBe('ok');
    }
  });

  it('reads inside a long put may both see the new value', () => {
    const h = history();
    h.op(1, 10, put('b'));
    h.op(2, 3, get(), 'b');
    h.op(4, 5, get(), 'b');
    expect(checkLinearizable(h.events).verdict).toBe('ok');
  });

  it('a pending put may or may not have taken effect', () => {
    for (const seen of ['x', null]) {
      const h = history();
      h.op(1, undefined, put('x'));
      h.op(2, 3, get(), seen);
      expect(checkLinearizable(h.events).verdict).toBe('ok');
    }
  });

  it('a failed put is ignored, keys are independent', () => {
    const events: HistoryEvent[] = [
      { type: 'invoke', id: 1, time: 1, op: put('x') },
      { type: 'fail', id: 1, time: 2 },
      { type: 'invoke', id: 2, time: 3, op: get() },
      { type: 'ok', id: 2, time: 4, result: null },
      { type: 'invoke', id: 3, time: 5, op: put('y', 'other') },
      { type: 'ok', id: 3, time: 6 },
    ];
    expect(checkLinearizable(events)).toMatchObject({ verdict: 'ok', keys: 2 });
  });
});

describe('checkLinearizable rejects broken histories', () => {
  it('a stale read (the old value after a newer put completed)', () => {
    const h = history();
    h.op(1, 2, put('a'));
    h.op(3, 4, put('b'));
    h.op(5, 6, get(), 'a');
    expect(checkLinearizable(h.events)).toMatchObject({ verdict: 'illegal', key: 'k' });
  });

  it('a lost write (absent after an acknowledged put)', () => {
    const h = history();
    h.op(1, 2, put('a'));
    h.op(3, 4, get(), null);
    expect(checkLinearizable(h.events).verdict).toBe('illegal');
  });

  it('a read of a value never written', () => {
    const h = history();
    h.op(1, 2, put('a'));
    h.op(1, 3, get(), 'z');
    expect(checkLinearizable(h.events).verdict).toBe('illegal');
  });

  it('a pending put seen, then unseen (values do not flicker)', () => {
    const h = history();
    h.op(1, undefined, put('x'));
    h.op(2, 3, get(), 'x');
    h.op(4, 5, get(), null);
    expect(checkLinearizable(h.events).verdict).toBe('illegal');
  });

  it('a delete that reports a missing key that exists', () => {
    const h = history();
    h.op(1, 2, put('a'));
    h.op(3, 4, del(), false);
    expect(checkLinearizable(h.events).verdict).toBe('illegal');
  });

  it('reports its ops for the offending key only', () => {
    const h = history();
    h.op(1, 2, put('fine', 'good'));
    h.op(3, 4, put('a'));
    h.op(5, 6, get(), null);
    const r = checkLinearizable(h.events);
    expect(r.key).toBe('k');
    expect(r.ops).toEqual(['[3, 4] put("a") → ok', '[5, 6] get → null']);
  });

  it('rejects malformed histories', () => {
    expect(() => checkLinearizable([{ type: 'ok', id: 1, time: 1 }])).toThrow(RangeError);
  });
});

/** A random history of a correct concurrent register: each op takes effect at a random instant inside its interval. */
function randomHistory(seed: number, opsCount: number, keys: number): { events: HistoryEvent[]; gets: number[] } {
  const rnd = new SeededRandom(seed);
  // Choose intervals first, then linearization points, then replay the model in point order to get results.
  type Planned = { id: number; op: KvOp; start: number; end: number; point: number; pending: boolean };
  const planned: Planned[] = [];
  for (let id = 1; id <= opsCount; id++) {
    const key = `k${rnd.int(keys)}`;
    const start = rnd.int(opsCount * 4) * 2;
    const end = start + 2 + rnd.int(20) * 2;
    const point = start + 1 + rnd.int((end - start) / 2) * 2; // odd, strictly inside
    const kind = rnd.int(10);
    const op: KvOp = kind < 4 ? { f: 'put', key, value: `v${id}` } : kind < 8 ? { f: 'get', key } : { f: 'delete', key };
    planned.push({ id, op, start, end, point, pending: op.f !== 'get' && rnd.int(20) === 0 });
  }
  const state = new Map<string, string>();
  const results = new Map<number, KvResult>();
  for (const p of [...planned].sort((a, b) => a.point - b.point)) {
    if (p.op.f === 'put') state.set(p.op.key, p.op.value);
    else if (p.op.f === 'get') results.set(p.id, state.get(p.op.key) ?? null);
    else results.set(p.id, state.delete(p.op.key));
  }
  const events: HistoryEvent[] = [];
  for (const p of planned) {
    events.push({ type: 'invoke', id: p.id, time: p.start, op: p.op });
    if (!p.pending) events.push({ type: 'ok', id: p.id, time: p.end, result: results.get(p.id) });
  }
  events.sort((a, b) => a.time - b.time);
  return { events, gets: planned.filter((p) => p.op.f === 'get').map((p) => p.id) };
}

describe('checkLinearizable on random histories', () => {
  const runs = process.env.VDE_LONG ? 2_000 : 150;
  it(`accepts ${runs} random linearizable histories and rejects each with one read changed to a never-written value`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 5, max: 120 }), fc.integer({ min: 1, max: 4 }), (seed, n, keys) => {
        const { events, gets } = randomHistory(seed, n, keys);
        expect(checkLinearizable(events).verdict).toBe('ok');
        if (gets.length === 0) return;
        const victim = gets[seed % gets.length]!;
        const broken = events.map((e) => (e.type === 'ok' && e.id === victim ? { ...e, result: 'never-written' } : e));
        expect(checkLinearizable(broken).verdict).toBe('illegal');
      }),
      { numRuns: runs, seed: 4242 },
    );
  });

  it('returns unknown past its step bound instead of searching on', () => {
    // 200 overlapping puts then a read of one of them: a large search space.
    const events: HistoryEvent[] = [];
    for (let i = 1; i <= 200; i++) events.push({ type: 'invoke', id: i, time: i, op: put(`v${i}`) });
    for (let i = 1; i <= 200; i++) events.push({ type: 'ok', id: i, time: 1000 + i });
    events.push({ type: 'invoke', id: 999, time: 2000, op: get() }, { type: 'ok', id: 999, time: 2001, result: 'nope' });
    const r = checkLinearizable(events, { maxSteps: 1000 });
    expect(r.verdict).toBe('unknown');
    expect(r.steps).toBeLessThanOrEqual(1001);
  });
});

describe('HistoryRecorder', () => {
  it('records invoke before the call and ok after it, and leaves rejected calls pending', async () => {
    const rec = new HistoryRecorder();
    await rec.record(put('a'), async () => undefined);
    await expect(rec.record(put('b'), () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await rec.record(get(), async () => 'b', (v) => v);
    expect(rec.events.map((e) => e.type)).toEqual(['invoke', 'ok', 'invoke', 'invoke', 'ok']);
    expect(checkLinearizable(rec.events).verdict).toBe('ok');
  });
});

describe('HistoryRecorder without toResult', () => {
  it('records what get and delete returned, so a correct store is linearizable and a stale one is not', async () => {
    const store = new Map<string, string>();
    const rec = new HistoryRecorder();
    await Promise.all([
      rec.record({ f: 'put', key: 'x', value: 'v' }, async () => void store.set('x', 'v')),
      rec.record({ f: 'get', key: 'x' }, async () => store.get('x')),
    ]);
    await rec.record({ f: 'get', key: 'x' }, async () => store.get('x'));
    await rec.record({ f: 'delete', key: 'x' }, async () => store.delete('x'));
    await rec.record({ f: 'get', key: 'x' }, async () => store.get('x')); // undefined: absent
    await rec.record({ f: 'get', key: 'y' }, async () => null);
    expect(rec.events.filter((e) => e.type === 'ok').map((e) => e.result)).toEqual([undefined, 'v', 'v', true, null, null]);
    expect(checkLinearizable(rec.events).verdict).toBe('ok');

    const stale = new HistoryRecorder();
    await stale.record({ f: 'put', key: 'x', value: 'v' }, async () => undefined);
    await stale.record({ f: 'get', key: 'x' }, async () => null);
    expect(checkLinearizable(stale.events).verdict).toBe('illegal');
  });

  it('a get returning bytes without toResult rejects with a TypeError and leaves the operation pending', async () => {
    const rec = new HistoryRecorder();
    await expect(rec.record({ f: 'get', key: 'x' }, async () => new Uint8Array([1]))).rejects.toThrow(TypeError);
    expect(rec.events.map((e) => e.type)).toEqual(['invoke']);
    expect(checkLinearizable(rec.events).verdict).toBe('ok');
  });
});

describe('checkLinearizable on histories as people write them', () => {
  const untimed = (events: HistoryEvent[]): HistoryEvent[] => events.map(({ time: _time, ...e }) => e as unknown as HistoryEvent);

  it('a history without times is read in array order: a stale read and a lost write are still illegal', () => {
    const stale = history();
    stale.op(1, 2, put('1'));
    stale.op(3, 4, get(), null);
    expect(checkLinearizable(untimed(stale.events)).verdict).toBe('illegal');
    const lost = history();
    lost.op(1, 2, put('1'));
    lost.op(3, 4, put('2'));
    lost.op(5, 6, get(), '1');
    expect(checkLinearizable(untimed(lost.events)).verdict).toBe('illegal');
    const fine = history();
    fine.op(1, 2, put('1'));
    fine.op(3, 4, get(), '1');
    expect(checkLinearizable(untimed(fine.events)).verdict).toBe('ok');
    // Concurrent in array order: the get's ok comes after the put's invoke and before its ok.
    const overlapping = [
      { type: 'invoke', id: 1, op: put('1') },
      { type: 'invoke', id: 2, op: get() },
      { type: 'ok', id: 2, result: '1' },
      { type: 'ok', id: 1 },
    ];
    expect(checkLinearizable(overlapping as unknown as HistoryEvent[]).verdict).toBe('ok');
  });

  it('refuses events it cannot read with a RangeError instead of a wrong verdict or a TypeError', () => {
    const bad: unknown[][] = [
      [{ type: 'invoke', id: 1, time: 1, op: { f: 'cas', key: 'k' } }],
      [{ type: 'invoke', id: 1, time: 1, op: { f: 'get' } }],
      [{ type: 'invoke', id: 1, time: 1, op: { f: 'put', key: 'k', value: 5 } }],
      [{ type: 'call', id: 1, time: 1, op: get() }],
      [{ type: 'invoke', id: 1, time: 'a', op: get() }],
      [{ type: 'invoke', id: 1, time: 1, op: get() }, { type: 'ok', id: 1, result: null }], // a time on some events only
      [{ type: 'invoke', id: 1, time: 1, op: get() }, { type: 'ok', id: 1, time: 2, result: 5 }],
      // A get's ok without a result (it was 'illegal', blaming the store for the history's gap).
      [{ type: 'invoke', id: 1, time: 1, op: get() }, { type: 'ok', id: 1, time: 2 }],
      [{ type: 'invoke', id: 1, time: 1, op: get() }, { type: 'ok', id: 1, time: 2, result: undefined }],
      [null],
    ];
    for (const events of bad) expect(() => checkLinearizable(events as HistoryEvent[]), JSON.stringify(events)).toThrow(RangeError);
    expect(() => checkLinearizable(null as never)).toThrow(RangeError);
  });
});
