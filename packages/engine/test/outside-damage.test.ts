import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { SMALL, bytes, checked, expectBytes, expectCode, tempDir } from './helpers.js';

// Damage done to a container file from outside (plain `fs`), then a writable open with the default `create: true`.
describe('a damaged container file is never formatted again', () => {
  it('a file cut below one block, holding superblock A, is ERR_VDE_CORRUPT and left as it was', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const vde = await VirtualDiskEngine.open(path, SMALL);
    await vde.store('k', bytes(5000));
    await checked(vde);
    await vde.close();
    for (const length of [128, 1000, 4095]) {
      await truncate(path, length);
      const before = await readFile(path);
      await expectCode(VirtualDiskEngine.open(path, SMALL), 'ERR_VDE_CORRUPT');
      // Read-only opens retry a CorruptionError for about 2 s (a writer's checkpoint may be in the way): one length.
      if (length === 128) await expectCode(VirtualDiskEngine.open(path, { ...SMALL, readOnly: true }), 'ERR_VDE_CORRUPT');
      expect(Buffer.compare(await readFile(path), before), `length ${length}`).toBe(0);
    }
  });

  it('a non-empty file shorter than one block without a superblock is ERR_VDE_FORMAT, not formatted', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'notes.txt');
    await writeFile(path, 'some text that is not a container');
    await expectCode(VirtualDiskEngine.open(path, SMALL), 'ERR_VDE_FORMAT');
    expect(await readFile(path, 'utf8')).toBe('some text that is not a container');
  });
});

describe('the log header of a container that was never checkpointed after its creation', () => {
  // A writer killed before its first checkpoint leaves a log whose header was written once, at creation.
  async function crashedFresh(blockSize: number) {
    const device = new MemoryBlockDevice({ blockSize });
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, blockSize });
    const values = new Map<string, Uint8Array>();
    for (let i = 0; i < 5; i++) {
      values.set(`k${i}`, bytes(i * 700 + 1, i + 1));
      await vde.store(`k${i}`, values.get(`k${i}`)!);
    }
    const image = device.image(); // acknowledged, never checkpointed: the crash
    await checked(vde);
    await vde.close();
    return { image, values };
  }

  it('one damaged header slot loses nothing', async () => {
    for (const blockSize of [512, 4096]) {
      const { image, values } = await crashedFresh(blockSize);
      for (const slot of [2, 3]) {
        const bad = image.slice();
        bad[slot * blockSize + 13] = bad[slot * blockSize + 13]! ^ 0x04;
        const vde = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(bad, blockSize), { ...SMALL, blockSize });
        for (const [k, v] of values) expectBytes(await vde.retrieve(k), v);
        await checked(vde);
        await vde.close();
      }
    }
  });

  it('both slots damaged is ERR_VDE_CORRUPT (a container with a valid superblock), not ERR_VDE_FORMAT', async () => {
    const { image } = await crashedFresh(4096);
    image[2 * 4096 + 13] = image[2 * 4096 + 13]! ^ 0x04;
    image[3 * 4096 + 13] = image[3 * 4096 + 13]! ^ 0x04;
    await expectCode(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), SMALL), 'ERR_VDE_CORRUPT');
    await expectCode(VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), { ...SMALL, readOnly: true }), 'ERR_VDE_CORRUPT');
  });
});

describe('a damaged newest log header after the log wrapped', () => {
  it('opens with every acknowledged object (the other slot holds the same head)', async () => {
    const blockSize = 4096;
    const device = new MemoryBlockDevice({ blockSize });
    // 16 log blocks: automatic checkpoints truncate the log, and later records reuse the area of the old head.
    const vde = await VirtualDiskEngine.open(device, { ...SMALL, walSizeBytes: 16 * blockSize });
    const values = new Map<string, Uint8Array>();
    for (let i = 0; i < 120; i++) {
      values.set(`k${i}`, bytes(900 + i, i + 1));
      await vde.store(`k${i}`, values.get(`k${i}`)!);
    }
    expect(vde.stats().checkpoints).toBeGreaterThan(2);
    const image = device.image(); // acknowledged, the last ones only in the log: the crash
    await checked(vde);
    await vde.close();
    const gen = (slot: number) => new DataView(image.buffer, image.byteOffset + slot * blockSize).getUint32(8, true);
    const newest = gen(2) > gen(3) ? 2 : 3;
    for (const slot of [newest, 5 - newest]) {
      const bad = image.slice();
      bad[slot * blockSize + 20] = bad[slot * blockSize + 20]! ^ 0x01;
      const reopened = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(bad, blockSize), { ...SMALL, walSizeBytes: 16 * blockSize });
      for (const [k, v] of values) expectBytes(await reopened.retrieve(k), v);
      await checked(reopened);
      await reopened.close();
    }
  });
});
