// The reader table under injected file-system faults: a table removed between a reader's mkdir and its write (another
// reader's release), a read-only file system, no write access. Each test failed on the code before its fix.
import * as realFs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { FileBlockDevice } from '../src/index.js';
import { makeTempDir, removeDir } from './helpers.js';

/** Called before the real `writeFile` / `mkdir` (the package's own calls included); undefined: pass through. */
const hooks = vi.hoisted(() => ({
  beforeWriteFile: undefined as undefined | ((file: string) => Promise<void>),
  beforeMkdir: undefined as undefined | ((dir: string, options: unknown) => Promise<void>),
}));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const writeFile: typeof actual.writeFile = async (...args) => {
    const file = args[0];
    await hooks.beforeWriteFile?.(typeof file === 'string' ? file : '');
    return actual.writeFile(...args);
  };
  const mkdir = (async (...args: Parameters<typeof actual.mkdir>) => {
    await hooks.beforeMkdir?.(String(args[0]), args[1]);
    return actual.mkdir(...args);
  }) as typeof actual.mkdir;
  return { ...actual, writeFile, mkdir, default: { ...actual, writeFile, mkdir } };
});

const dirs: string[] = [];

afterEach(() => {
  hooks.beforeWriteFile = undefined;
  hooks.beforeMkdir = undefined;
});

afterAll(async () => {
  await Promise.all(dirs.splice(0).map(removeDir));
});

async function container(): Promise<string> {
  const dir = await makeTempDir();
  dirs.push(dir);
  const p = path.join(dir, 'c.vde');
  const dev = await FileBlockDevice.open(p, { create: true });
  await dev.grow(2);
  await dev.write(1, new Uint8Array(4096).fill(7));
  await dev.sync();
  await dev.close();
  return p;
}

function fsError(code: string): Error {
  return Object.assign(new Error(`${code}: injected`), { code });
}

describe('reader table faults', () => {
  it('a table removed between mkdir and the entry write (another reader released) is made again', async () => {
    const p = await container();
    let removed = 0;
    // What another reader's release() does at the worst moment: rmdir the (still empty) table.
    hooks.beforeWriteFile = async (file) => {
      if (file.startsWith(`${p}.readers${path.sep}`) && removed < 3) {
        removed++;
        await realFs.rmdir(`${p}.readers`);
      }
    };
    const reader = await FileBlockDevice.open(p, { readOnly: true });
    expect(removed).toBe(3);
    hooks.beforeWriteFile = undefined;
    const writer = await FileBlockDevice.open(p);
    expect(await writer.readerMarks()).toEqual([null]);
    await reader.close();
    await writer.close();
  });

  it('a table that keeps vanishing gives up after a bounded number of attempts with ERR_VDE_IO ENOENT', async () => {
    const p = await container();
    let removed = 0;
    hooks.beforeWriteFile = async (file) => {
      if (file.startsWith(`${p}.readers${path.sep}`)) {
        removed++;
        await realFs.rmdir(`${p}.readers`);
      }
    };
    await expect(FileBlockDevice.open(p, { readOnly: true })).rejects.toMatchObject({ code: 'ERR_VDE_IO', errno: 'ENOENT' });
    expect(removed).toBeGreaterThan(1);
    expect(removed).toBeLessThan(100);
  });

  it('on a read-only file system (EROFS) a read-only open proceeds without a reader entry', async () => {
    const p = await container();
    for (const where of ['mkdir', 'write'] as const) {
      // The table cannot be made (EROFS from mkdir), or exists and cannot be written (EROFS from the entry write).
      if (where === 'mkdir') hooks.beforeMkdir = async (dir) => (dir === `${p}.readers` ? Promise.reject(fsError('EROFS')) : undefined);
      else {
        hooks.beforeMkdir = undefined;
        hooks.beforeWriteFile = async (file) =>
          file.startsWith(`${p}.readers${path.sep}`) ? Promise.reject(fsError('EROFS')) : undefined;
      }
      const reader = await FileBlockDevice.open(p, { readOnly: true });
      expect((await reader.read(1, 1))[0]).toBe(7);
      await reader.setReaderMark(4); // a no-op without an entry
      expect(await reader.readerMarks()).toEqual([]);
      await reader.close();
    }
  });

  it('on a read-only file system a read-only open proceeds, also as Node reports it: ENOENT from a recursive mkdir', async () => {
    const p = await container();
    // What Linux and Node do on a read-only mount (checked on a tmpfs mounted ro): mkdir of a missing directory is
    // EROFS, but mkdir with { recursive: true } stats the path after that failure and reports ENOENT.
    hooks.beforeMkdir = async (dir, options) => {
      if (dir !== `${p}.readers`) return;
      const recursive = typeof options === 'object' && options !== null && (options as { recursive?: unknown }).recursive === true;
      throw fsError(recursive ? 'ENOENT' : 'EROFS');
    };
    hooks.beforeWriteFile = async (file) => (file.startsWith(`${p}.readers`) ? Promise.reject(fsError('EROFS')) : undefined);
    const reader = await FileBlockDevice.open(p, { readOnly: true });
    expect((await reader.read(1, 1))[0]).toBe(7);
    expect(await reader.readerMarks()).toEqual([]);
    await reader.close();
  });

  it('without write access (EACCES, EPERM) a read-only open is refused with a message that says why', async () => {
    const p = await container();
    for (const code of ['EACCES', 'EPERM']) {
      hooks.beforeMkdir = async (dir) => (dir === `${p}.readers` ? Promise.reject(fsError(code)) : undefined);
      const err = await FileBlockDevice.open(p, { readOnly: true }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_VDE_IO', errno: code });
      expect((err as Error).message).toContain('write access');
      expect((err as Error).message).toContain(`${p}.readers`);
      expect((err as Error).message).toContain('writer keeps the blocks it reads');
    }
  });
});
