import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { SMALL, bytes, checked, expectBytes, expectCode, forwarding, memoryEngine } from './helpers.js';

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A source that yields its chunks a few event-loop turns apart (a slow producer). */
async function* slow(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) {
    await new Promise((r) => setTimeout(r, 1));
    yield c;
  }
}

// Writes to one key called one after another, without awaiting, take effect in the order they were called, also
// when the first one writes its data before it asks for its stripe (a large object, a stream). Before, the later
// write took the stripe first: an un-awaited delete after a large store left the object there 50 times out of 50.
describe('writes to one key take effect in call order', () => {
  const large = bytes(20_000, 3);
  const kinds: Array<[string, (vde: VirtualDiskEngine, key: string) => Promise<unknown>]> = [
    ['a large object in memory', (vde, key) => vde.store(key, large)],
    ['a stream', (vde, key) => vde.store(key, slow([large.subarray(0, 8000), large.subarray(8000)]))],
  ];
  for (const [name, first] of kinds) {
    it(`${name}, then an un-awaited delete / small store / large store / batch`, async () => {
      const { vde } = await memoryEngine({ stripeCount: 4 });
      for (let round = 0; round < 10; round++) {
        const k = `k${round}`;
        await Promise.all([first(vde, `${k}/del`), vde.delete(`${k}/del`)]);
        expect(await vde.exists(`${k}/del`)).toBe(false);

        await Promise.all([first(vde, `${k}/small`), vde.store(`${k}/small`, 'last')]);
        expect(text(await vde.retrieve(`${k}/small`))).toBe('last');

        const last = bytes(30_000, 100 + round);
        await Promise.all([first(vde, `${k}/large`), vde.store(`${k}/large`, last)]);
        expectBytes(await vde.retrieve(`${k}/large`), last);

        await Promise.all([first(vde, `${k}/batch`), vde.batch([{ type: 'put', key: `${k}/batch`, data: 'batch' }, { type: 'del', key: `${k}/other` }])]);
        expect(text(await vde.retrieve(`${k}/batch`))).toBe('batch');

        // Three in a row: a small store waiting behind the large one is not overtaken by a delete called after it.
        await Promise.all([first(vde, `${k}/three`), vde.store(`${k}/three`, 'middle'), vde.delete(`${k}/three`)]);
        expect(await vde.exists(`${k}/three`)).toBe(false);
      }
      await checked(vde);
      await vde.close();
    });
  }

  it('a write waiting behind a stalled stream on its key holds nothing: other keys go on, and it can be aborted', async () => {
    const { vde } = await memoryEngine({ stripeCount: 1 });
    let release!: () => void;
    const stalled = new Promise<void>((r) => (release = r));
    const streaming = vde.store(
      'k',
      (async function* () {
        yield bytes(8000, 1);
        await stalled;
        yield bytes(8000, 2);
      })(),
    );
    const ac = new AbortController();
    const waiting = vde.store('k', 'after', { signal: ac.signal });
    await vde.store('other', 'x'); // the only stripe is free: nothing waits for the stream
    await vde.checkpoint();
    ac.abort();
    await expectCode(waiting, 'ERR_VDE_ABORTED');
    const later = vde.store('k', 'later');
    release();
    await streaming;
    await later;
    expect(text(await vde.retrieve('k'))).toBe('later');
    await checked(vde);
    await vde.close();
  });
});

/** `inner` behind a BlockDevice whose write paths the test replaces (`overrides`); everything else goes straight to `inner`. */
function over(inner: MemoryBlockDevice, overrides: Pick<BlockDevice, 'write' | 'writeDurable'>): BlockDevice {
  return forwarding(inner, overrides);
}

/** A device whose next data write of `bytes` bytes waits until `release()`; `onWalHeader` runs after the log's header is written. */
function steeredDevice(inner: MemoryBlockDevice, holdBytes: number) {
  let hold = false;
  let held: (() => void) | undefined;
  let onWalHeader: (() => void) | undefined;
  const device = over(inner, {
    async write(b, d) {
      if (hold && d.byteLength === holdBytes) {
        hold = false;
        await new Promise<void>((r) => (held = r));
      }
      return inner.write(b, d);
    },
    async writeDurable(b, d) {
      await inner.writeDurable(b, d);
      // The log's truncate writes its header durably (a single block near the start of the container).
      if (onWalHeader && d.byteLength === inner.blockSize && b < 16) {
        const f = onWalHeader;
        onWalHeader = undefined;
        f();
      }
    },
  });
  return {
    device,
    holdNextData: () => (hold = true),
    /** The held data write completes right after the log is truncated (the next log header write). */
    releaseAfterTruncate: () => (onWalHeader = () => held?.()),
  };
}

// Writes that do not write their data ahead could still be overtaken: a delete or a batch waits (a turn of the event
// loop once reads spent its budget, one more step before the stripe) and a small store waits for log space, each
// before it asks for its stripe, and a later write to the key went first. An un-awaited delete followed by a store
// left the key deleted 20 times out of 20.
describe('call order: writes that wait before their stripe without writing ahead', () => {
  it('an un-awaited delete or batch, then a store of the key: the store is last', async () => {
    const { vde } = await memoryEngine();
    const large = bytes(20_000, 5);
    for (let round = 0; round < 5; round++) {
      for (const [name, first] of [
        ['delete', (k: string) => vde.delete(k)],
        ['batch del', (k: string) => vde.batch([{ type: 'del', key: k }])],
        ['batch put', (k: string) => vde.batch([{ type: 'put', key: k, data: 'batch' }])],
        ['batch of two', (k: string) => vde.batch([{ type: 'put', key: `${k}/other`, data: 'o' }, { type: 'del', key: k }])],
      ] as const) {
        const k = `${name}/${round}`;
        await vde.store(k, 'old');
        await Promise.all([first(k), vde.store(k, 'new')]);
        expect(text(await vde.retrieve(k)), name).toBe('new');
        await Promise.all([first(k), vde.store(k, large)]);
        expectBytes(await vde.retrieve(k), large);
      }
    }
    await checked(vde);
    await vde.close();
  });

  it('a delete called once cached reads spent the turn budget, then a store: the store is last', async () => {
    const { vde } = await memoryEngine();
    await vde.store('warm', 'x');
    for (let round = 0; round < 5; round++) {
      const k = `k${round}`;
      await vde.store(k, 'old');
      // Cached reads for a few milliseconds: the next delete waits for a turn of the event loop before it goes on.
      const reads: Promise<boolean>[] = [];
      const t0 = performance.now();
      while (performance.now() - t0 < 4) reads.push(vde.exists('warm'));
      await Promise.all([vde.delete(k), vde.store(k, 'new'), ...reads]);
      expect(text(await vde.retrieve(k))).toBe('new');
    }
    await checked(vde);
    await vde.close();
  });

  it('a small store waiting for log space, then a large store whose data lands just after the log is truncated', async () => {
    const inner = new MemoryBlockDevice({ blockSize: 4096 });
    const steer = steeredDevice(inner, 4 * 4096);
    const vde = await VirtualDiskEngine.open(steer.device, {
      walSizeBytes: 64 * 1024,
      cacheSizeBytes: 256 * 1024,
      checkpointWalUtilizationPercent: 100,
      durability: 'relaxed',
    });
    const large = bytes(4 * 4096, 9);
    await vde.store('pre', large); // grows the container once
    await vde.delete('pre');
    await vde.checkpoint();
    for (let i = 0; i < 13; i++) await vde.store(`fill${i}`, 'f'.repeat(500)); // one block of log each: full
    const checkpoints = vde.stats().checkpoints;
    steer.holdNextData();
    steer.releaseAfterTruncate();
    const small = vde.store('k', 'small'); // waits for log space (a checkpoint)
    const big = vde.store('k', large); // called after it: must be the one left
    await Promise.all([small, big]);
    expect(vde.stats().checkpoints).toBeGreaterThan(checkpoints); // the small store did wait for the log
    expectBytes(await vde.retrieve('k'), large);
    await checked(vde);
    await vde.close();
  });
});

describe('call order: a batch of several keys that waits for a busy stripe', () => {
  it('is not overtaken on one of its keys by a store called after it', async () => {
    const inner = new MemoryBlockDevice({ blockSize: 4096 });
    let holdLog = false;
    const held: Array<() => void> = [];
    const device = over(inner, {
      write: (b, d) => inner.write(b, d),
      async writeDurable(b, d) {
        if (holdLog) await new Promise<void>((r) => held.push(r));
        return inner.writeDurable(b, d);
      },
    });
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, inlineCommits: false });
    for (let round = 0; round < 5; round++) {
      const [a, b] = [`a${round}`, `b${round}`];
      holdLog = true; // the first store holds a's stripe until its commit is let go
      const first = vde.store(a, 'first');
      await new Promise((r) => setImmediate(r));
      const batch = vde.batch([
        { type: 'put', key: a, data: 'batch' },
        { type: 'put', key: b, data: 'batch' },
      ]);
      const later = vde.store(b, 'later');
      await new Promise((r) => setImmediate(r));
      holdLog = false;
      for (const go of held.splice(0)) go();
      await Promise.all([first, batch, later]);
      expect(text(await vde.retrieve(a))).toBe('batch');
      expect(text(await vde.retrieve(b))).toBe('later');
    }
    await checked(vde);
    await vde.close();
  });
});

// Model-based: a random sequence of un-awaited writes to two keys (small, large and streamed stores, some of them
// aborted or with a failing source, deletes, batches, a checkpoint) leaves each key as the last call that succeeded,
// in call order, left it; nothing hangs, and the container passes check().
describe('call order against a model', () => {
  type Op =
    | { kind: 'small' | 'large' | 'stream' | 'failing-stream'; key: number; abort: 0 | 1 | 2 | 3 }
    | { kind: 'delete'; key: number }
    | { kind: 'batch'; key: number; other: number; del: boolean }
    | { kind: 'checkpoint' };
  const key = fc.integer({ min: 0, max: 1 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constantFrom('small' as const, 'large' as const, 'stream' as const, 'failing-stream' as const), key, abort: fc.constantFrom(0 as const, 0 as const, 1 as const, 2 as const, 3 as const) }),
    fc.record({ kind: fc.constant('delete' as const), key }),
    fc.record({ kind: fc.constant('batch' as const), key, other: key, del: fc.boolean() }),
    fc.record({ kind: fc.constant('checkpoint' as const) }),
  );

  it('final state = the last successful call, in call order', async () => {
    const { vde } = await memoryEngine({ stripeCount: 4, walSizeBytes: 64 * 1024 });
    let tag = 0;
    const read = async (k: string): Promise<number | undefined> => {
      if (!(await vde.exists(k))) return undefined;
      const v = await vde.retrieve(k);
      return v.byteLength < 16 ? Number(text(v)) : new DataView(v.buffer, v.byteOffset).getUint32(0);
    };
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 2, maxLength: 8 }), async (ops) => {
        const model = new Map<string, number | undefined>();
        for (const k of ['k0', 'k1']) model.set(k, await read(k));
        const calls: Array<{ done: Promise<unknown>; apply: () => void }> = [];
        for (const o of ops) {
          const t = ++tag;
          const small = new TextEncoder().encode(String(t));
          const large = (): Uint8Array => {
            const b = bytes(9000 + (t % 7) * 3000, t);
            new DataView(b.buffer).setUint32(0, t);
            return b;
          };
          if (o.kind === 'checkpoint') {
            calls.push({ done: vde.checkpoint(), apply: () => undefined });
          } else if (o.kind === 'delete') {
            const k = `k${o.key}`;
            calls.push({ done: vde.delete(k), apply: () => model.set(k, undefined) });
          } else if (o.kind === 'batch') {
            const k = `k${o.key}`;
            const other = `k${o.other}`;
            const list: Array<{ type: 'put'; key: string; data: Uint8Array } | { type: 'del'; key: string }> = [{ type: 'put', key: k, data: small }];
            if (other !== k) list.push(o.del ? { type: 'del', key: other } : { type: 'put', key: other, data: small });
            calls.push({
              done: vde.batch(list),
              apply: () => {
                for (const b of list) model.set(b.key, b.type === 'del' ? undefined : t);
              },
            });
          } else {
            const k = `k${o.key}`;
            const ac = o.abort === 0 ? undefined : new AbortController();
            const data = o.kind === 'small' ? small : large();
            const source =
              o.kind === 'stream' || o.kind === 'failing-stream'
                ? (async function* () {
                    yield data.subarray(0, 4000);
                    await new Promise((r) => setImmediate(r));
                    if (o.kind === 'failing-stream') throw new Error('source failed');
                    yield data.subarray(4000);
                  })()
                : data;
            calls.push({ done: vde.store(k, source, ac ? { signal: ac.signal } : {}), apply: () => model.set(k, t) });
            if (o.abort === 1) ac!.abort();
            else if (o.abort === 2) setImmediate(() => ac!.abort());
            else if (o.abort === 3) setTimeout(() => ac!.abort(), 1);
          }
        }
        const settled = await Promise.allSettled(calls.map((c) => c.done));
        settled.forEach((s, i) => {
          if (s.status === 'fulfilled') calls[i]!.apply();
          else expect(['ERR_VDE_ABORTED', 'ERR_VDE_SOURCE']).toContain((s.reason as { code?: string }).code);
        });
        for (const k of ['k0', 'k1']) expect(await read(k), k).toBe(model.get(k));
      }),
      { seed: 4242, numRuns: 60 },
    );
    await checked(vde);
    await vde.close();
  });
});
