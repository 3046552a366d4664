import { MemoryBlockDevice, VirtualDiskEngine, VdeError } from '@vde/engine';
import { SeededRandom } from '@vde/test-harness';
import { describe, expect, it } from 'vitest';
import { SMALL, bytes, expectBytes } from './helpers.js';

async function populated() {
  const device = new MemoryBlockDevice({ blockSize: 4096 });
  const vde = await VirtualDiskEngine.open(device, SMALL);
  const values = new Map<string, Uint8Array>();
  for (let i = 0; i < 300; i++) {
    const v = bytes(i % 3 === 0 ? 9000 : 200, i + 1);
    values.set(`key/${String(i).padStart(4, '0')}`, v);
    await vde.store(`key/${String(i).padStart(4, '0')}`, v, { metadata: { i: String(i) } });
  }
  await vde.close();
  return { image: device.image(), values };
}

/** Reads everything; every answer must be right or a typed VdeError — never wrong bytes, never another error. */
async function readAll(image: Uint8Array, values: Map<string, Uint8Array>): Promise<{ typed: number; good: number }> {
  let typed = 0;
  let good = 0;
  const guard = async <T>(f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      if (!(err instanceof VdeError)) throw err;
      expect(['ERR_VDE_CORRUPT', 'ERR_VDE_FORMAT', 'ERR_VDE_NOT_FOUND']).toContain(err.code);
      typed++;
      return undefined;
    }
  };
  const vde = await guard(() => VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), { ...SMALL, readOnly: true }));
  if (!vde) return { typed, good };
  for (const [k, v] of values) {
    const got = await guard(() => vde.retrieve(k));
    if (got) {
      expect(Buffer.compare(Buffer.from(got), Buffer.from(v))).toBe(0);
      good++;
    }
  }
  await guard(async () => {
    for await (const o of vde.list()) expect(values.has(o.key)).toBe(true);
  });
  const report = await vde.scrub();
  for (const p of report.problems) expect(['ERR_VDE_CORRUPT', 'ERR_VDE_IO']).toContain(p.code);
  // Each problem once (the structural check and the walk over the entries meet a damaged index page both).
  const seen = report.problems.map((p) => `${p.key ?? ''}|${p.code}|${p.message}`);
  expect(new Set(seen).size).toBe(seen.length);
  await vde.close();
  return { typed, good };
}

describe('corruption is detected, never returned (DESIGN.md invariant 6)', () => {
  it('a flipped byte in an object is ERR_VDE_CORRUPT for that object only', async () => {
    const { image, values } = await populated();
    const v = values.get('key/0003')!;
    const at = Buffer.from(image).indexOf(Buffer.from(v.subarray(0, 64)));
    expect(at).toBeGreaterThan(0);
    const bad = image.slice();
    bad[at + 100] = bad[at + 100]! ^ (0x01);
    const vde = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(bad, 4096), SMALL);
    await expect(vde.retrieve('key/0003')).rejects.toMatchObject({ code: 'ERR_VDE_CORRUPT' });
    expectBytes(await vde.retrieve('key/0006'), values.get('key/0006')!);
    await vde.close();
  });

  it('random single-byte flips anywhere give right data or typed errors', async () => {
    const { image, values } = await populated();
    const rnd = new SeededRandom(42);
    // Flip bytes where something was written (non-zero bytes): superblocks, meta, index pages, data, old log.
    const used: number[] = [];
    for (let i = 0; i < image.byteLength; i++) if (image[i] !== 0) used.push(i);
    let typed = 0;
    for (let t = 0; t < 60; t++) {
      const bad = image.slice();
      const at = used[rnd.int(used.length)]!;
      bad[at] = bad[at]! ^ (1 << rnd.int(8));
      typed += (await readAll(bad, values)).typed;
    }
    // readAll asserts that every answer was right or typed; most flips land in live data and are caught.
    expect(typed).toBeGreaterThan(10);
  }, 120_000);

  it('flips in the superblocks, index pages and truncation give typed errors', async () => {
    const { image, values } = await populated();
    // Superblock A damaged: B is a valid older checkpoint or the open fails typed.
    const a = image.slice();
    a[20] = a[20]! ^ (0xff);
    await readAll(a, values);
    // Both superblocks damaged: ERR_VDE_CORRUPT.
    const both = image.slice();
    both[20] = both[20]! ^ (0xff);
    both[4096 + 20] = both[4096 + 20]! ^ (0xff);
    await expect(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(both, 4096), SMALL)).rejects.toMatchObject({ code: 'ERR_VDE_CORRUPT' });
    // Truncated to half: typed error.
    const half = image.slice(0, Math.floor(image.byteLength / 2 / 4096) * 4096);
    await expect(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(half, 4096), SMALL)).rejects.toBeInstanceOf(VdeError);
    // Zeros: not a container.
    await expect(VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096, blockCount: 8 }), SMALL)).rejects.toMatchObject({
      code: 'ERR_VDE_FORMAT',
    });
  });
});

describe('a damaged newest superblock', () => {
  it('is ERR_VDE_CORRUPT when the log no longer covers the older checkpoint (no silent rollback)', async () => {
    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, SMALL);
    await vde.store('a', 'A');
    await vde.checkpoint();
    await vde.store('b', 'B'); // acknowledged; close checkpoints it and truncates the log
    const generation = vde.stats().generation + 1;
    await vde.close();
    const image = device.image();
    const newest = generation % 2 === 1 ? 0 : 4096;
    image[newest + 100] = image[newest + 100]! ^ 1;
    await expect(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL)).rejects.toMatchObject({ code: 'ERR_VDE_CORRUPT' });
  });

  it('is ERR_VDE_CORRUPT when the damaged checkpoint created or deleted a named snapshot (no silent rollback)', async () => {
    for (const change of ['create', 'delete'] as const) {
      const device = new MemoryBlockDevice({ blockSize: 4096 });
      const vde = await VirtualDiskEngine.open(device, SMALL);
      await vde.store('a', 'A');
      if (change === 'delete') await vde.createSnapshot('old');
      await vde.checkpoint();
      // A change that lives only in the checkpoint's meta blob, acknowledged; then a crash.
      if (change === 'create') await vde.createSnapshot('keepme');
      else expect(await vde.deleteSnapshot('old')).toBe(true);
      const generation = vde.stats().generation;
      const image = device.image();
      await vde.close();
      const intact = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL);
      expect(intact.listSnapshots().map((s) => s.name)).toEqual(change === 'create' ? ['keepme'] : []);
      await intact.close();
      const newest = generation % 2 === 1 ? 0 : 4096;
      image[newest + 100] = image[newest + 100]! ^ 1;
      await expect(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL), change).rejects.toMatchObject({ code: 'ERR_VDE_CORRUPT' });
    }
  });

  it('falls back to the older checkpoint when the newest superblock write was torn before the log was truncated', async () => {
    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, SMALL);
    await vde.store('a', 'A');
    await vde.checkpoint();
    await vde.store('b', 'B');
    // Simulate: the next checkpoint's superblock is written torn, nothing after it happened.
    const image = device.image();
    const older = vde.stats().generation % 2 === 1 ? 0 : 4096;
    const torn = older === 0 ? 4096 : 0;
    image.fill(0xab, torn + 40, torn + 90);
    await vde.close();
    const reopened = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL);
    expect(new TextDecoder().decode(await reopened.retrieve('b'))).toBe('B');
    await reopened.close();
  });
});
