import { describe, expect, it } from 'vitest';
import type { VirtualDiskEngine } from '@vde/engine';
import { bytes, checked, expectBytes, expectCode, memoryEngine } from './helpers.js';

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
