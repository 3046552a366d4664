import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SMALL, bytes, checked, collect, expectBytes, memoryEngine, tempDir, turnCounter } from './helpers.js';

describe('concurrency (DESIGN.md invariants 1 and 2)', () => {
  it('64 writers on 64 keys hold their stripes at the same time (file container, real I/O)', async () => {
    await using tmp = await tempDir();
    const vde = await VirtualDiskEngine.open(join(tmp.dir, 'c.vde'));
    // Pick 64 keys on 64 distinct stripes.
    const keys: string[] = [];
    const used = new Set<number>();
    for (let i = 0; keys.length < 64; i++) {
      const s = vde.stripes.stripeOf(`key-${i}`);
      if (!used.has(s)) {
        used.add(s);
        keys.push(`key-${i}`);
      }
    }
    vde.stripes.resetPeak();
    await Promise.all(keys.map((k, i) => vde.store(k, bytes(8192, i))));
    const stats = vde.stats();
    // Overlap is observed, not assumed: many stripes were held at once, and group commit shared fsyncs.
    expect(stats.stripes.peakHeld).toBeGreaterThan(8);
    expect(stats.wal.syncs).toBeLessThan(64);
    for (const [i, k] of keys.entries()) expectBytes(await vde.retrieve(k), bytes(8192, i));
    await checked(vde);
    await vde.close();
  });

  /** Lone stores, a delete and a batch one after another, then 64 concurrent stores; returns the inline counts. */
  async function loneThenConcurrent(vde: VirtualDiskEngine): Promise<{ lone: number; concurrent: number; turns: number }> {
    const inline = () => vde.stats().wal.inlineBatches;
    for (let i = 0; i < 20; i++) await vde.store(`lone-${i}`, bytes(1000 + i * 700, i)); // inline and extent objects
    await vde.delete('lone-3');
    await vde.batch([{ type: 'put', key: 'lone-b', data: bytes(10, 7) }, { type: 'del', key: 'lone-4' }]);
    const counter = turnCounter();
    for (let i = 0; i < 50; i++) await vde.store(`turn-${i % 10}`, bytes(100, i));
    counter.stop();
    const lone = inline();
    await Promise.all(Array.from({ length: 64 }, (_, i) => vde.store(`many-${i}`, bytes(500, i))));
    return { lone, concurrent: inline() - lone, turns: counter.turns() };
  }

  async function expectLoneThenConcurrent(vde: VirtualDiskEngine): Promise<void> {
    for (let i = 0; i < 20; i++) {
      if (i === 3 || i === 4) expect(await vde.exists(`lone-${i}`)).toBe(false);
      else expectBytes(await vde.retrieve(`lone-${i}`), bytes(1000 + i * 700, i));
    }
    expectBytes(await vde.retrieve('lone-b'), bytes(10, 7));
    expect((await collect(vde.list({ prefix: 'many-' }))).length).toBe(64);
  }

  it('a lone writer commits inline (one durable write on the calling thread); concurrent writers never do', async () => {
    // A memory device: its writes take microseconds, so the log's 2 ms rule always allows inline commits. (On a
    // file, a loaded machine whose syncs take over 2 ms sends them to the pool instead: see the next test.)
    const { device, vde } = await memoryEngine();
    const { lone, concurrent, turns } = await loneThenConcurrent(vde);
    const image = device.image(); // as a power cut would leave it: everything acknowledged is durable
    // Every lone write went out on this thread: 20 stores, a delete, a batch and 50 stores.
    expect(lone).toBeGreaterThanOrEqual(72);
    // The event loop turns between them (each inline write waits for a check phase): a lone writer that awaits
    // one store after another does not starve timers and I/O callbacks.
    expect(turns).toBeGreaterThanOrEqual(49);
    // 64 writers in flight: none is alone, so none blocks the thread for its commit (at most the last ones, once
    // the others finished).
    expect(concurrent).toBeLessThanOrEqual(2);
    await vde.close();
    const again = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL);
    await expectLoneThenConcurrent(again);
    await checked(again);
    await again.close();
  });

  it('on a file, lone and concurrent writes (inline or through the pool) are all there after reopen', async () => {
    await using tmp = await tempDir();
    const file = join(tmp.dir, 'c.vde');
    const vde = await VirtualDiskEngine.open(file);
    const { concurrent, turns } = await loneThenConcurrent(vde);
    expect(turns).toBeGreaterThanOrEqual(49);
    expect(concurrent).toBeLessThanOrEqual(2);
    await vde.close();
    const again = await VirtualDiskEngine.open(file);
    await expectLoneThenConcurrent(again);
    await checked(again);
    await again.close();
    // inlineCommits: false never does.
    const off = await VirtualDiskEngine.open(file, { inlineCommits: false });
    for (let i = 0; i < 5; i++) await off.store(`off-${i}`, bytes(100, i));
    expect(off.stats().wal.inlineBatches).toBe(0);
    await checked(off);
    await off.close();
  });

  it('64 writers on one key serialize: one value survives and the history is linearizable', async () => {
    const { vde } = await memoryEngine();
    vde.stripes.resetPeak();
    const completions: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        await vde.store('hot', bytes(3000 + i, i + 1));
        completions.push(i);
      }),
    );
    expect(vde.stats().stripes.peakHeld).toBe(1);
    // Writes to one key take effect in stripe (FIFO) order, so the last to complete is the value that stays.
    const last = completions[completions.length - 1]!;
    expectBytes(await vde.retrieve('hot'), bytes(3000 + last, last + 1));
    expect(completions).toEqual([...completions].sort((a, b) => a - b));
    await checked(vde);
    await vde.close();
  });

  it('large objects are written before the stripe is taken: stores of one stripe overlap their data writes', async () => {
    // A device that counts the data writes in flight (writes past the superblocks and the log region).
    const dataStart = 2 + (SMALL.walSizeBytes ?? 0) / 4096;
    let inFlight = 0;
    let peak = 0;
    class CountingDevice extends MemoryBlockDevice {
      override async write(blockNo: number, data: Uint8Array): Promise<void> {
        const isData = blockNo >= dataStart;
        if (isData) peak = Math.max(peak, ++inFlight);
        try {
          await new Promise((r) => setTimeout(r, 2));
          return await super.write(blockNo, data);
        } finally {
          if (isData) inFlight--;
        }
      }
    }
    const device = new CountingDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, SMALL);
    const values = Array.from({ length: 8 }, (_, i) => bytes(20_000 + i, i + 1));
    const done: number[] = [];
    await Promise.all(
      values.map(async (v, i) => {
        await vde.store('same', v);
        done.push(i);
      }),
    );
    // One key, one stripe: the data writes were in flight together, up to the engine's limit (one thread fewer
    // than libuv's pool, 4 unless UV_THREADPOOL_SIZE says otherwise); the records went one at a time.
    const limit = Math.max(1, (Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10) || 4) - 1);
    expect(peak).toBe(Math.min(limit, values.length));
    expect(vde.stats().stripes.peakHeld).toBe(1);
    const last = done[done.length - 1]!;
    expectBytes(await vde.retrieve('same'), values[last]!);
    await checked(vde);
    await vde.close();
  });

  it('a store aborted while it waits for its stripe frees the blocks it wrote ahead', async () => {
    const { vde } = await memoryEngine();
    await vde.store('k', bytes(30_000, 1));
    await vde.checkpoint();
    const free = vde.stats().freeBlocks;
    const region = await vde.stripes.acquire('k'); // a writer of this stripe that does not finish yet
    const ac = new AbortController();
    const pending = vde.store('k', bytes(50_000, 2), { signal: ac.signal });
    while (vde.stats().freeBlocks === free) await new Promise((r) => setTimeout(r, 1)); // its blocks are written
    expect(vde.stats().freeBlocks).toBeLessThan(free);
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_VDE_ABORTED' });
    region.release();
    expect(vde.stats().freeBlocks).toBe(free);
    expectBytes(await vde.retrieve('k'), bytes(30_000, 1));
    await checked(vde);
    await vde.close();
  });

  it('readers see the old or the new object, never a mix, while writers overwrite', async () => {
    const { vde } = await memoryEngine();
    const versions = Array.from({ length: 20 }, (_, i) => bytes(20_000, i + 1));
    await vde.store('k', versions[0]!);
    const valid = new Set(versions.map((v) => Buffer.from(v).toString('base64')));
    let stop = false;
    const reads: Promise<number>[] = Array.from({ length: 4 }, async () => {
      let n = 0;
      while (!stop) {
        const got = await vde.retrieve('k');
        expect(valid.has(Buffer.from(got).toString('base64'))).toBe(true);
        n++;
        await new Promise((r) => setImmediate(r));
      }
      return n;
    });
    for (let round = 0; round < 3; round++) {
      for (const v of versions) await vde.store('k', v);
      await vde.checkpoint();
    }
    stop = true;
    const counts = await Promise.all(reads);
    expect(counts.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    await checked(vde);
    await vde.close();
  });

  it('auto-checkpoints under a small log without deadlock, with concurrent writers', async () => {
    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, walSizeBytes: 64 * 1024, checkpointWalUtilizationPercent: 50 });
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; i < 40; i++) await vde.store(`w${w}/k${i % 7}`, bytes(500 + i, w * 100 + i));
      }),
    );
    expect(vde.stats().checkpoints).toBeGreaterThan(2);
    for (let w = 0; w < 16; w++) {
      for (let k = 0; k < 7; k++) {
        const i = 39 - ((39 - k) % 7);
        expectBytes(await vde.retrieve(`w${w}/k${k}`), bytes(500 + i, w * 100 + i));
      }
    }
    await checked(vde);
    await vde.close();
  });

  it('an automatic checkpoint flushes the index ahead while stores go on, then checkpoints what changed meanwhile', async () => {
    const wal = 1024 * 1024;
    const walEnd = 2 + wal / 4096; // blocks 0-1 superblocks, then the log (FORMAT.md)
    let release!: () => void;
    let held = 0;
    /** Holds every write past the log (index pages, meta blob) while `hold` is set: only the log moves. */
    class HoldingDevice extends MemoryBlockDevice {
      hold = false;
      released = Promise.resolve();
      async #gate(blockNo: number): Promise<void> {
        if (this.hold && blockNo >= walEnd) {
          held++;
          await this.released;
        }
      }
      override async write(blockNo: number, data: Uint8Array): Promise<void> {
        await this.#gate(blockNo);
        return super.write(blockNo, data);
      }
      override async writeDurable(blockNo: number, data: Uint8Array): Promise<void> {
        await this.#gate(blockNo);
        return super.writeDurable(blockNo, data);
      }
    }
    const device = new HoldingDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, { walSizeBytes: wal, checkpointWalUtilizationPercent: 40 });
    const model = new Map<string, Uint8Array>();
    const put = async (k: string, v: Uint8Array): Promise<void> => {
      await vde.store(k, v);
      model.set(k, v);
    };
    device.hold = true;
    device.released = new Promise<void>((r) => (release = r));
    // Up to the automatic checkpoint: its flush ahead starts and its page writes are held.
    let i = 0;
    while (held === 0 && i < 5000) {
      await Promise.all(Array.from({ length: 8 }, (_, w) => put(`k${w}/${i}`, bytes(200, i * 8 + w))));
      i++;
    }
    expect(held).toBeGreaterThan(0);
    const checkpointsBefore = vde.stats().checkpoints;
    // Stores go on while the flush's writes are held (they would all wait here if the flush held the gate).
    // (Each round is one log batch, padded to a block: 20 rounds use well under the log's free part.)
    for (let j = 0; j < 20; j++) await Promise.all(Array.from({ length: 8 }, (_, w) => put(`more${w}/${j}`, bytes(150, j * 8 + w + 1))));
    expect(vde.stats().preflushes).toBe(0);
    expect(vde.stats().checkpoints).toBe(checkpointsBefore);
    // check() (gate exclusive) waits for the flush: mid-flush, the pages it replaced are in neither the tree nor
    // the deferred-free list, and a census then would report them as leaked.
    let checkedMidFlush = false;
    const checking = vde.check().then((r) => {
      checkedMidFlush = vde.stats().preflushes === 0;
      return r;
    });
    await new Promise((r) => setTimeout(r, 5));
    device.hold = false;
    release();
    expect((await checking).objects).toBe(model.size);
    expect(checkedMidFlush).toBe(false);
    while (vde.stats().checkpoints === checkpointsBefore) await new Promise((r) => setTimeout(r, 1));
    expect(vde.stats().preflushes).toBe(1);
    for (const [k, v] of model) expectBytes(await vde.retrieve(k), v);
    await checked(vde);
    await vde.close();
    const reopened = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 4096));
    for (const [k, v] of model) expectBytes(await reopened.retrieve(k), v);
    await checked(reopened);
    await reopened.close();
  });

  it('a checkpoint is a cut of completed stores (metamorphic: stripe counts 1, 4, 64 give the same state)', async () => {
    const results: string[] = [];
    for (const stripeCount of [1, 4, 64]) {
      const { vde, device } = await memoryEngine({ stripeCount });
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; i < 25; i++) {
            if (i % 5 === 4) await vde.delete(`w${w}/${i - 1}`);
            else await vde.store(`w${w}/${i}`, bytes(100 * i, w + i));
            if (i % 10 === 0 && w === 0) await vde.checkpoint();
          }
        }),
      );
      await vde.close();
      const reopened = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 4096), SMALL);
      const state: string[] = [];
      for await (const o of reopened.list()) state.push(`${o.key}:${o.size}:${Buffer.from(await reopened.retrieve(o.key)).toString('base64').slice(0, 16)}`);
      results.push(state.join('|'));
      await checked(reopened);
      await reopened.close();
    }
    expect(results[1]).toBe(results[0]);
    expect(results[2]).toBe(results[0]);
  });
});

describe('container growth', () => {
  it('64 concurrent 1 MiB stores and a 1,000-put batch grow the file about as much as they store', async () => {
    await using tmp = await tempDir();
    const vde = await VirtualDiskEngine.open(join(tmp.dir, 'g.vde'));
    const before = vde.stats().containerBytes;
    await Promise.all(Array.from({ length: 64 }, (_, i) => vde.store(`big${i}`, bytes(1 << 20, i))));
    await vde.batch(Array.from({ length: 1000 }, (_, i) => ({ type: 'put' as const, key: `b${i}`, data: bytes(1024, i) })));
    const grown = vde.stats().containerBytes - before;
    // 64 MiB + ~1-4 MiB of batch data; growth by 25% steps may overshoot, but never by orders of magnitude.
    expect(vde.stats().containerBytes).toBeGreaterThan(64 << 20);
    expect(grown).toBeLessThan(3 * (68 << 20));
    expect(vde.stats().freeBlocks).toBeLessThan(vde.stats().containerBytes / 4096);
    for (const i of [0, 31, 63]) expectBytes(await vde.retrieve(`big${i}`), bytes(1 << 20, i));
    await checked(vde);
    await vde.close();
  });
});

describe('batch visibility', () => {
  it('concurrent readers see all of a batch or none of it', async () => {
    const { vde } = await memoryEngine({ cacheSizeBytes: 64 * 1024 });
    for (let i = 0; i < 300; i++) await vde.store(`pad${i}`, bytes(50, i));
    for (let round = 0; round < 5; round++) {
      const keys = Array.from({ length: 150 }, (_, i) => `r${round}/k${String(i).padStart(3, '0')}`);
      let done = false;
      const seen: number[] = [];
      const reader = (async () => {
        while (!done) {
          const present = await Promise.all(keys.map((k) => vde.exists(k)));
          seen.push(present.filter(Boolean).length);
          await new Promise((r) => setImmediate(r));
        }
      })();
      await vde.batch(keys.map((key, i) => ({ type: 'put' as const, key, data: bytes(40, i) })));
      done = true;
      await reader;
      expect(seen.every((n) => n === 0 || n === keys.length), `partial batch seen: ${seen.join(',')}`).toBe(true);
    }
    await checked(vde);
    await vde.close();
  });
});
