import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { SMALL, bytes, checked, expectCode, tempDir } from './helpers.js';

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
