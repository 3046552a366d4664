import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { json, tempDir, vde } from './helpers.js';

// The container's own files (the container, under any name, its lock files and reader table) are never imported
// into it nor written over by export or get -o: the first grew a container into itself without end (a streamed
// store of a file that grows while it is read), the others destroyed it. And get -o writes into a device or pipe
// or through a symbolic link instead of replacing the node with a regular file (as root, `-o /dev/null` replaced
// /dev/null, and `-o /dev/stdout > out` replaced the /dev/stdout link and left out empty).

let dir: string;
let cleanup: () => Promise<void>;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  file = path.join(dir, 'c.vde');
  // A small log keeps the container under 4 MiB, so that the old code read it whole (and ended) instead of
  // streaming it while it grows.
  expect((await vde(['create', file, '--wal-size', '64k'])).code).toBe(0);
});
afterEach(async () => cleanup());

describe("the container's own files", () => {
  it('import of the directory that holds the container skips the container and its other names', async () => {
    await fs.writeFile(path.join(dir, 'a.txt'), 'a');
    await fs.link(file, path.join(dir, 'hard.vde'));
    await fs.symlink('c.vde', path.join(dir, 'soft.vde'));
    const r = await vde(['import', file, dir, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(json(r)).toMatchObject({ files: 1, skipped: [file, path.join(dir, 'hard.vde'), path.join(dir, 'soft.vde')] });
    expect((await vde(['ls', file])).stdout).toBe('a.txt\n');
    expect((await vde(['check', file])).code).toBe(0);
  });

  it('export into the container directory does not write over the container or its lock file', async () => {
    for (const key of ['c.vde', 'c.vde.lock', 'other']) expect((await vde(['put', file, key], key)).code).toBe(0);
    const r = await vde(['export', file, dir, '--json']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ files: 1, skipped: ['c.vde', 'c.vde.lock'] });
    expect(await fs.readFile(path.join(dir, 'other'), 'utf8')).toBe('other');
    const text = await vde(['export', file, dir]);
    expect(text.stderr).toContain('vde: key "c.vde" would overwrite the container or its lock or reader files; not exported\n');
    expect((await vde(['ls', file])).stdout).toBe('c.vde\nc.vde.lock\nother\n');
  });

  it('get -o refuses the container itself, also through a link (ERR_VDE_EXISTS)', async () => {
    expect((await vde(['put', file, 'k'], 'bytes')).code).toBe(0);
    await fs.symlink('c.vde', path.join(dir, 'soft.vde'));
    for (const output of [file, path.join(dir, 'soft.vde'), `${file}.lock`]) {
      const r = await vde(['get', file, 'k', '-o', output]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/is the container itself or one of its lock or reader files.*\(ERR_VDE_EXISTS\)\n$/);
    }
    expect((await vde(['get', file, 'k'])).stdout).toBe('bytes');
    const ok = path.join(dir, 'k.out');
    expect((await vde(['get', file, 'k', '-o', ok])).code).toBe(0);
    expect(await fs.readFile(ok, 'utf8')).toBe('bytes');
  });

  it('put refuses the container itself as its source (ERR_VDE_INVALID_ARGUMENT), also through a link', { timeout: 5_000 }, async () => {
    await fs.symlink('c.vde', path.join(dir, 'soft.vde'));
    const before = (await fs.stat(file)).size;
    for (const source of [file, path.join(dir, 'soft.vde')]) {
      const r = await vde(['put', file, 'self', source]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`vde: put: the source is the container ${file} itself: store another file (ERR_VDE_INVALID_ARGUMENT)\n`);
    }
    expect((await fs.stat(file)).size).toBe(before);
    expect((await vde(['ls', file])).stdout).toBe('');
  });

  it('get -o to a named pipe writes into the pipe instead of replacing it with a regular file', async () => {
    expect((await vde(['put', file, 'k'], 'through the pipe')).code).toBe(0);
    const fifo = path.join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // A reader that does not block its open, so that the writer's open of the pipe succeeds at once.
    const reader = await fs.open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const r = await vde(['get', file, 'k', '-o', fifo]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((await fs.stat(fifo)).isFIFO()).toBe(true);
      const buf = Buffer.alloc(64);
      const { bytesRead } = await reader.read(buf, 0, 64, null);
      expect(buf.subarray(0, bytesRead).toString()).toBe('through the pipe');
    } finally {
      await reader.close();
    }
    expect((await fs.readdir(dir)).filter((n) => n.includes('vde-partial'))).toEqual([]);
  });

  it('get -o through a symbolic link replaces the file it leads to and keeps the link (-o /dev/stdout > file)', async () => {
    expect((await vde(['put', file, 'k'], 'new bytes')).code).toBe(0);
    const target = path.join(dir, 'target.txt');
    const link = path.join(dir, 'link');
    await fs.writeFile(target, 'old');
    await fs.symlink('target.txt', link);
    const r = await vde(['get', file, 'k', '-o', link]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
    expect(await fs.readFile(target, 'utf8')).toBe('new bytes');
    expect((await fs.readdir(dir)).filter((n) => n.includes('vde-partial'))).toEqual([]);
  });
});
