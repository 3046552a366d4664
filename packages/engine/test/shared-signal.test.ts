/**
 * One AbortSignal passed to many concurrent operations (a shutdown signal on every call): the engine adds one abort
 * listener to it, not one per operation, so Node prints no MaxListenersExceededWarning (it did from the 11th
 * concurrent store, retrieve, read stream or streamed store on). An abort still ends every one of them.
 */
import { getEventListeners } from 'node:events';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VdeError } from '@vde/engine';
import { bytes, checked, memoryEngine } from './helpers.js';

let warnings: Error[] = [];
const onWarning = (w: Error): void => {
  warnings.push(w);
};
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

async function leakWarnings(): Promise<string[]> {
  await new Promise((r) => setImmediate(r)); // Node emits the warning on a later tick
  return warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message);
}

describe('one signal shared by many operations', () => {
  it('64 stores, retrieves, read streams and streamed stores on one signal: one listener, no warning', async () => {
    const { vde } = await memoryEngine({ stripeCount: 1 }); // one stripe: the stores wait for each other
    const ac = new AbortController();
    const { signal } = ac;
    await Promise.all(Array.from({ length: 64 }, (_, i) => vde.store(`k${i}`, bytes(10_000, i + 1), { signal })));
    const reads = Array.from({ length: 64 }, (_, i) => vde.retrieve(`k${i}`, { signal }));
    const streams = Array.from({ length: 16 }, (_, i) => vde.createReadStream(`k${i}`, { signal }));
    expect(getEventListeners(signal, 'abort').length).toBeLessThanOrEqual(2); // the engine's and the lock's
    const got = await Promise.all(reads);
    got.forEach((b, i) => expect(Buffer.compare(b, bytes(10_000, i + 1))).toBe(0)); // toEqual on 640 KB is slow
    for (const s of streams) for await (const _ of s) void _;
    // Streamed stores: each source waits until released, so all 16 wait on the signal at once.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sources = Array.from({ length: 16 }, (_, i) =>
      Readable.from(
        (async function* () {
          await gate;
          yield bytes(5000, i + 100);
        })(),
      ),
    );
    const stores = sources.map((src, i) => vde.store(`s${i}`, src, { signal }));
    await new Promise((r) => setImmediate(r));
    expect(getEventListeners(signal, 'abort').length).toBeLessThanOrEqual(2);
    release();
    await Promise.all(stores);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    expect(await leakWarnings()).toEqual([]);
    await checked(vde);
    await vde.close();
  });

  it('an abort still ends every operation waiting on the shared signal', async () => {
    const { vde } = await memoryEngine();
    const ac = new AbortController();
    const { signal } = ac;
    const sources = Array.from({ length: 12 }, () =>
      Readable.from(
        (async function* () {
          yield new Uint8Array(10);
          await new Promise(() => undefined); // stalls forever
        })(),
      ),
    );
    const stores = sources.map((src, i) => vde.store(`stalled${i}`, src, { signal }).catch((e: unknown) => e));
    await new Promise((r) => setTimeout(r, 20));
    ac.abort(new Error('shutdown'));
    const errors = await Promise.all(stores);
    for (const e of errors) expect((e as VdeError).code).toBe('ERR_VDE_ABORTED');
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    expect(await leakWarnings()).toEqual([]);
    for (let i = 0; i < 12; i++) expect(await vde.exists(`stalled${i}`)).toBe(false);
    await vde.close();
  });
});
