import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { checked, memoryEngine } from './helpers.js';

const WAL_BYTES = 4 << 20;
const BLOCK = 512;

/** Holds the log's writes and the reads while told to; the test releases them one by one. */
class GatedDevice extends MemoryBlockDevice {
  holdLog = false;
  holdReads = false;
  readonly logWaiters: (() => void)[] = [];
  readonly readWaiters: (() => void)[] = [];
  #isLog(blockNo: number): boolean {
    return blockNo >= 2 && blockNo < 2 + WAL_BYTES / BLOCK;
  }
  override async read(blockNo: number, count: number): Promise<Uint8Array> {
    if (this.holdReads) await new Promise<void>((r) => this.readWaiters.push(r));
    return super.read(blockNo, count);
  }
  override async readInto(blockNo: number, buffer: Uint8Array): Promise<void> {
    if (this.holdReads) await new Promise<void>((r) => this.readWaiters.push(r));
    return super.readInto(blockNo, buffer);
  }
  override async write(blockNo: number, data: Uint8Array): Promise<void> {
    if (this.holdLog && this.#isLog(blockNo)) await new Promise<void>((r) => this.logWaiters.push(r));
    return super.write(blockNo, data);
  }
  override async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
    if (this.holdLog && this.#isLog(blockNo)) await new Promise<void>((r) => this.logWaiters.push(r));
    return super.writeDurable(blockNo, data);
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Turns the event loop until `done()`, releasing every held read but the oldest one (the batch's) meanwhile. */
async function releaseAllButFirst(dev: GatedDevice, done: () => boolean, turns = 5000): Promise<void> {
  for (let i = 0; i < turns && !done(); i++) {
    if (dev.readWaiters.length > 1) dev.readWaiters.splice(1, 1)[0]!();
    await turn();
  }
}

// Operations in flight in one process while others change (or close) the store.
describe('operations in flight', () => {
  it('a list() iterator taken before close() ends with ERR_VDE_CLOSED once its copied leaf is used up', async () => {
    const { vde } = await memoryEngine();
    await vde.batch(Array.from({ length: 2000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(5, '0')}`, data: 'v' })));
    const it = vde.list()[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done ? undefined : first.value.key).toBe('k00000');
    await checked(vde);
    await vde.close();
    let listed = 1;
    let code: string | undefined;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        listed++;
      }
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    // Before: it went on reading the closed engine's page cache and listed all 2,000.
    expect(code).toBe('ERR_VDE_CLOSED');
    expect(listed).toBeLessThan(2000);
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('a reader does not see part of a batch whose index changes are applied while a store applies its own', async () => {
    const dev = new GatedDevice({ blockSize: BLOCK });
    const vde = await VirtualDiskEngine.open(dev, { cacheSizeBytes: 64 * 1024, inlineCommits: false, walSizeBytes: WAL_BYTES });
    const key = (i: number): string => `k${String(i).padStart(6, '0')}`;
    const N = 6000;
    for (let b = 0; b < N; b += 500) await vde.batch(Array.from({ length: 500 }, (_, j) => ({ type: 'put' as const, key: key(b + j), data: 'v0' })));
    await vde.checkpoint();
    const [x, u, w, z] = [key(100), key(3000), key(4000), key(5000)];
    // The batch's and the store's records wait in the log while the leaves of u, w and z leave the cache (x's stays).
    dev.holdLog = true;
    let batchDone = false;
    const batch = vde.batch(['v1', 'v1', 'v1'].map((data, i) => ({ type: 'put' as const, key: [x, u, w][i]!, data })));
    void batch.then(() => (batchDone = true));
    for (let i = 0; i < 200 && dev.logWaiters.length === 0; i++) await turn();
    expect(dev.logWaiters.length).toBeGreaterThan(0);
    let storeDone = false;
    const store = vde.store(z, 'v1');
    void store.then(() => (storeDone = true));
    for (let i = 0; i < 20; i++) await turn();
    for (let i = 0; i < 2500; i += 3) await vde.exists(key(i));
    await vde.exists(x);
    // Both apply with page loads in between: the batch x (cached) then u (held: the oldest read), the store z.
    dev.holdReads = true;
    dev.holdLog = false;
    for (const r of dev.logWaiters.splice(0)) r();
    await releaseAllButFirst(dev, () => storeDone);
    expect(storeDone).toBe(true);
    expect(batchDone).toBe(false);
    // The batch is half applied (x is in, u is waiting for its leaf): a reader waits until all of it is.
    let xDone = false;
    const xRead = vde.retrieve(x);
    void xRead.then(() => (xDone = true));
    await releaseAllButFirst(dev, () => xDone, 200);
    const xSeenEarly = xDone;
    dev.holdReads = false;
    for (const r of dev.readWaiters.splice(0)) r();
    const xv = Buffer.from(await xRead).toString();
    const wv = Buffer.from(await vde.retrieve(w)).toString();
    await batch;
    // Before: the store's apply replaced the batch's barrier and cleared it when it finished, so the read of x
    // returned at once with the batch's value while w still had the old one ('v0').
    expect({ xSeenEarly, xv, wv }).toEqual({ xSeenEarly: false, xv: 'v1', wv: 'v1' });
    await checked(vde);
    await vde.close();
  });

  it('a snapshot list() iterator that fails on an indirect record after snapshot.close() stays finished', async () => {
    const { vde } = await memoryEngine();
    // Metadata too large for the leaf makes k2's record indirect: listing it reads a block (a new read).
    for (let i = 0; i < 5; i++) await vde.store(`k${i}`, 'x', { metadata: i === 2 ? { big: 'm'.repeat(5000) } : {} });
    const snap = await vde.snapshot();
    const it = snap.list()[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done ? undefined : first.value.key).toBe('k0');
    await snap.close();
    const seen: string[] = [];
    for (let j = 0; j < 5; j++) {
      try {
        const r = await it.next();
        seen.push(r.done ? 'done' : r.value.key);
      } catch (err) {
        seen.push((err as { code?: string }).code ?? String(err));
      }
    }
    // Before: after the error it went on with k3 and k4 (k2 skipped), then failed again.
    expect(seen).toEqual(['k1', 'ERR_VDE_CLOSED', 'done', 'done', 'done']);
    await checked(vde);
    await vde.close();
  });
});
