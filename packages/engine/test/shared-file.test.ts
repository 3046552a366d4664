/*
 * One container file, several opens: a writer recovering beside registered readers, a reader table that cannot be
 * read, and a writable open racing a create. (Real processes are exercised by @vde/test-harness; these are the
 * deterministic cases.)
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { checked, collect, expectCode, tempDir } from './helpers.js';

const value = (b: number): Uint8Array => new Uint8Array(8192).fill(b);

describe('recovery beside a read-only open that has not set its mark', () => {
  it('takes back the blocks the crashed writer had reused after its last checkpoint', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const crash = join(tmp.dir, 'crash.vde');
    const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 1 << 20 });
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, value(1));
    await vde.checkpoint();
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, value(2)); // the old versions' blocks are deferred
    await vde.checkpoint(); // freed once durable; this checkpoint's meta blob still lists them as deferred
    for (let i = 0; i < 20; i++) await vde.store(`n${i}`, value(3)); // reuses them; only the log says so
    await copyFile(path, crash); // what a crash leaves: every acknowledged store is in the file
    await vde.close();
    // A read-only open registers ("?": it may read anything) before it reads a byte.
    const reader = await FileBlockDevice.open(crash, { readOnly: true });
    try {
      const recovered = await VirtualDiskEngine.open(crash);
      const keys = (await collect(recovered.list())).map((o) => o.key);
      expect(keys.length).toBe(40);
      for (let i = 0; i < 20; i++) expect((await recovered.retrieve(`n${i}`))[0]).toBe(3);
      for (let i = 0; i < 20; i++) expect((await recovered.retrieve(`k${i}`))[0]).toBe(2);
      await checked(recovered);
      await recovered.close();
    } finally {
      await reader.close();
    }
  });
});

describe('a reader table the writer cannot read', () => {
  it('holds freed space instead of failing the checkpoint or the next open', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    await writeFile(`${path}.readers`, 'not a directory');
    const vde = await VirtualDiskEngine.open(path);
    await vde.store('a', value(1));
    await vde.store('a', value(2));
    await vde.checkpoint();
    await vde.store('b', value(3));
    expect((await vde.retrieve('a'))[0]).toBe(2);
    expect((await vde.health()).poisoned).toBe(false);
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(path);
    expect((await again.retrieve('b'))[0]).toBe(3);
    await checked(again);
    await again.close();
  });
});

describe('a writable open of a container another open is still creating', () => {
  it('is ERR_VDE_LOCKED, not ERR_VDE_FORMAT', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    // The creator holds the lock and has written only part of the file so far.
    const creator = await FileBlockDevice.open(path, { create: true });
    await creator.grow(4);
    try {
      await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_LOCKED');
    } finally {
      await creator.close();
    }
    // Once the creator is gone, the same file is what it is: not a container.
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_FORMAT');
  });
});
