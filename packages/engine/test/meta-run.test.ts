import { describe, expect, it } from 'vitest';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { SMALL, bytes, checked, expectBytes } from './helpers.js';

/** Holds the first write made after `holdNext()` until `release()`; every other write goes straight through. */
class HoldingDevice extends MemoryBlockDevice {
  #arm = false;
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  holding = false;
  holdNext(): void {
    this.#arm = true;
    this.#held = new Promise<void>((r) => (this.#release = r));
  }
  release(): void {
    this.#release?.();
  }
  override async write(blockNo: number, data: Uint8Array): Promise<void> {
    if (this.#arm) {
      this.#arm = false;
      this.holding = true;
      await this.#held;
      this.holding = false;
    }
    return super.write(blockNo, data);
  }
}

/** A source that hands out chunks only as the test pushes them, and ends on `end()`. */
function pushedSource(): { source: AsyncIterable<Uint8Array>; push: (c: Uint8Array) => void; end: () => void; waiting: () => boolean } {
  const queue: Uint8Array[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  let waiting = false;
  const source = (async function* () {
    for (;;) {
      if (queue.length > 0) {
        yield queue.shift()!;
        continue;
      }
      if (ended) return;
      waiting = true;
      await new Promise<void>((r) => (wake = r));
      waiting = false;
    }
  })();
  return {
    source,
    push: (c) => {
      queue.push(c);
      wake?.();
    },
    end: () => {
      ended = true;
      wake?.();
    },
    // The source has nothing queued and the store asked for the next chunk: everything pushed was taken.
    waiting: () => waiting && queue.length === 0,
  };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 5_000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  expect(cond()).toBe(true);
};

describe('a checkpoint whose allocator image outgrows the meta run taken for it', () => {
  // A 512-byte block's bitmap covers 4,096 blocks (2 MiB): a stream that grows the container by 8 MiB while the
  // checkpoint flushes its index makes the bitmap, and with it the meta blob, 4 blocks longer than the run the
  // checkpoint took before its flush. The checkpoint must take a larger run, not fail (a failure after the flush
  // poisons the engine) and not write a blob past its run.
  it('takes a larger run, and the container it leaves opens with every object', async () => {
    const device = new HoldingDevice({ blockSize: 512 });
    const vde = await VirtualDiskEngine.open(device, SMALL);
    const small = Array.from({ length: 200 }, (_, i) => bytes(40, i + 1));
    for (let i = 0; i < small.length; i++) await vde.store(`k${String(i).padStart(4, '0')}`, small[i]!);
    const blocksBefore = device.blockCount;

    const src = pushedSource();
    const chunks: Uint8Array[] = [];
    const streaming = vde.store('big', src.source);
    const push = (c: Uint8Array): void => {
      chunks.push(c);
      src.push(c);
    };
    push(bytes(64 * 1024, 7));
    await until(src.waiting);

    device.holdNext(); // the flush's first page write
    const checkpoint = vde.checkpoint();
    await until(() => device.holding);
    for (let i = 0; i < 32; i++) {
      push(bytes(256 * 1024, 100 + i));
      await until(src.waiting);
    }
    expect(device.blockCount - blocksBefore).toBeGreaterThan(16_384); // the container grew by more than 8 MiB
    device.release();
    await checkpoint;
    // A crash right here: the durable checkpoint (made while the stream grew the container) opens, without the stream.
    const crashed = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 512), SMALL);
    expect(await crashed.exists('big')).toBe(false);
    for (let i = 0; i < small.length; i++) expectBytes(await crashed.retrieve(`k${String(i).padStart(4, '0')}`), small[i]!);
    await checked(crashed);
    await crashed.close();
    src.end();
    const info = await streaming;
    expect(info.size).toBe(64 * 1024 + 32 * 256 * 1024);
    await checked(vde);
    await vde.close();

    const again = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 512), SMALL);
    expectBytes(await again.retrieve('big'), Buffer.concat(chunks));
    for (let i = 0; i < small.length; i++) expectBytes(await again.retrieve(`k${String(i).padStart(4, '0')}`), small[i]!);
    await checked(again);
    await again.close();
  });

  it('at maxSizeBytes: the stream that fills the container fails with a typed error, the checkpoint does not', async () => {
    const device = new HoldingDevice({ blockSize: 512 });
    const maxSizeBytes = 12 * 1024 * 1024;
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, maxSizeBytes });
    for (let i = 0; i < 200; i++) await vde.store(`k${String(i).padStart(4, '0')}`, bytes(40, i + 1));
    const src = pushedSource();
    const streaming = vde.store('big', src.source).then(
      () => 'stored',
      (err: unknown) => (err as { code?: string }).code,
    );
    src.push(bytes(64 * 1024, 7));
    await until(src.waiting);
    device.holdNext();
    const checkpoint = vde.checkpoint();
    await until(() => device.holding);
    let outcome: string | undefined;
    void streaming.then((o) => (outcome = o));
    for (let i = 0; i < 64 && outcome === undefined; i++) {
      src.push(bytes(256 * 1024, 100 + i));
      await until(() => src.waiting() || outcome !== undefined);
    }
    // FULL, or TOO_LARGE once the stream alone is more than the container may ever hold: typed, either way.
    expect(['ERR_VDE_FULL', 'ERR_VDE_TOO_LARGE']).toContain(await streaming);
    expect(device.blockCount * 512).toBeLessThanOrEqual(maxSizeBytes);
    device.release();
    await checkpoint; // neither failed nor poisoned the engine
    await vde.store('after', 'still writable');
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 512), { ...SMALL, maxSizeBytes });
    expect(await again.exists('big')).toBe(false);
    expect(Buffer.from(await again.retrieve('after')).toString()).toBe('still writable');
    await checked(again);
    await again.close();
  });
});

/** Stores 900-byte objects k0, k1, … until ERR_VDE_FULL; returns how many went in. */
async function fillUntilFull(e: VirtualDiskEngine): Promise<number> {
  let n = 0;
  await expect(
    (async () => {
      for (;; n++) await e.store(`k${n}`, new Uint8Array(900).fill(n & 255));
    })(),
  ).rejects.toMatchObject({ code: 'ERR_VDE_FULL' });
  return n;
}

describe('deletes at maxSizeBytes while a snapshot holds the deleted objects', () => {
  it('stop while the next checkpoint still finds a run for its meta blob: after the release, checkpoint and close work', async () => {
    const dev = new MemoryBlockDevice({ blockSize: 512 });
    const e = await VirtualDiskEngine.open(dev, { walSizeBytes: 1 << 20, maxSizeBytes: 4 << 20 });
    const n = await fillUntilFull(e);
    const snap = await e.snapshot();
    let deleted = 0;
    let refused = 0;
    for (let i = 0; i < n; i += 2) {
      try {
        await e.delete(`k${i}`);
        deleted++;
      } catch (err) {
        expect(err).toMatchObject({ code: 'ERR_VDE_FULL' });
        refused++;
      }
    }
    expect(deleted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0); // the snapshot pins every deleted block: the container does fill up
    await snap.close();
    await e.checkpoint(); // was ERR_VDE_FULL for good (no run for the meta blob)
    expect((await e.check()).objects).toBe(n - deleted);
    expectBytes(await e.retrieve('k1'), new Uint8Array(900).fill(1));
    await e.close(); // was ERR_VDE_FULL too
  });
});

describe('stores at maxSizeBytes after a snapshot that held deleted objects is released', () => {
  it('go in: the checkpoint that frees the deleted blocks runs first, without the caller running one', async () => {
    const e = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 512 }), { walSizeBytes: 1 << 20, maxSizeBytes: 4 << 20 });
    const n = await fillUntilFull(e);
    const snap = await e.snapshot();
    let deleted = 0;
    for (let i = 0; i < n && deleted < 300; i += 2) {
      const ok = await e.delete(`k${i}`).catch((err: unknown) => {
        expect(err).toMatchObject({ code: 'ERR_VDE_FULL' }); // the snapshot pins them: the container fills up
        return false;
      });
      if (ok) deleted++;
    }
    expect(deleted).toBeGreaterThan(100);
    // The snapshot still reads them, so their blocks stay: stores are refused (checkpoints meanwhile free nothing).
    await expect(e.store('held', new Uint8Array(100))).rejects.toMatchObject({ code: 'ERR_VDE_FULL' });
    await snap.close();
    for (let i = 0; i < 100; i++) await e.store(`new${i}`, new Uint8Array(100).fill(7)); // were all ERR_VDE_FULL
    expectBytes(await e.retrieve('new99'), new Uint8Array(100).fill(7));
    expect((await e.check()).objects).toBe(n - deleted + 100);
    await e.close();
  });
});
