import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { json, tempDir, vde } from './helpers.js';

// File names and keys that cannot be each other: import of a tree with one name that is not UTF-8 failed as a whole
// (ENOENT on the name decoded with U+FFFD), export stopped at a key segment too long for a file name (ENAMETOOLONG),
// rm stopped at an invalid key without reporting the keys it had deleted before it.

let dir: string;
let cleanup: () => Promise<void>;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  file = path.join(dir, 'c.vde');
  expect((await vde(['create', file, '--wal-size', '64k'])).code).toBe(0);
});
afterEach(async () => cleanup());

describe('names that cannot be keys, keys that cannot be names', () => {
  it('import skips and lists a file name that is not UTF-8, and imports the rest', async () => {
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    await fs.writeFile(path.join(src, 'a'), 'a');
    await fs.writeFile(path.join(src, 'z'), 'z');
    const bad = Buffer.concat([Buffer.from(`${src}/bad`), Buffer.from([0xff]), Buffer.from('name')]);
    try {
      await fs.writeFile(bad, 'b');
    } catch {
      return; // a file system that takes only UTF-8 names (macOS): nothing to test
    }
    const r = await vde(['import', file, src, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(json(r)).toMatchObject({ files: 2, skipped: [path.join(src, 'bad\uFFFDname')] });
    expect((await vde(['ls', file])).stdout).toBe('a\nz\n');
  });

  it('export skips and reports a key with a segment over 255 bytes, and writes the rest', async () => {
    const long = `d/${'n'.repeat(256)}`;
    for (const key of ['a', long, 'z', `${'m'.repeat(255)}/ok`]) expect((await vde(['put', file, key], key.slice(0, 3))).code).toBe(0);
    const out = path.join(dir, 'out');
    const r = await vde(['export', file, out, '--json', '--concurrency', '1']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ files: 3, skipped: [long] });
    expect((await fs.readdir(out)).sort()).toEqual(['a', 'm'.repeat(255), 'z']);
    const text = await vde(['export', file, path.join(dir, 'out2')]);
    expect(text.stderr).toBe(`vde: key "${long}" has a path segment longer than 255 bytes (too long for a file name); not exported\n`);
  });

  it('rm reports an invalid key like a missing one, deletes the other keys and reports them', async () => {
    for (const key of ['a', 'b']) expect((await vde(['put', file, key], key)).code).toBe(0);
    const bad = 'x'.repeat(2000);
    const r = await vde(['rm', file, 'a', bad, 'b', '--force']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('removed a\nremoved b\n');
    expect(r.stderr).toMatch(/^vde: "x+": key is 2000 UTF-8 bytes; .* \(ERR_VDE_INVALID_KEY\)\n$/);
    expect((await vde(['ls', file])).stdout).toBe('');
    expect((await vde(['put', file, 'c'], 'c')).code).toBe(0);
    expect(json(await vde(['rm', file, '', 'c', 'gone', '--json']))).toEqual({ removed: ['c'], missing: ['gone'], invalid: [''] });
  });

  it('import checks every key before it stores anything: a too-long key refuses the whole import, naming the files', async () => {
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    const names = ['a', 'l'.repeat(200), 'm'.repeat(150), 'z'];
    for (const name of names) await fs.writeFile(path.join(src, name), name.slice(0, 1));
    // With the prefix, the 200- and 150-byte names make keys over the 1,024-byte limit. Before, the import stopped at
    // the first store that failed, after whichever stores in flight had finished (with 64 at once: timing).
    for (const concurrency of ['1', '64']) {
      const r = await vde(['import', file, src, '--prefix', 'p'.repeat(900), '--concurrency', concurrency]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^vde: import refused, nothing stored: 2 of 4 files would get a key longer than this container's limit of 1,024 UTF-8 bytes/);
      expect(r.stderr).toContain(`${path.join(src, 'l'.repeat(200))} (key of 1,100 bytes)`);
      expect(r.stderr).toContain(`${path.join(src, 'm'.repeat(150))} (key of 1,050 bytes)`);
      expect(r.stderr).toMatch(/\(ERR_VDE_INVALID_KEY\)\n$/);
      expect((await vde(['ls', file])).stdout).toBe('');
    }
    // A shorter prefix fits them all.
    expect((await vde(['import', file, src, '--prefix', 'p'.repeat(800)])).code).toBe(0);
    expect((await vde(['ls', file])).stdout.split('\n').filter(Boolean)).toHaveLength(4);
  });
});
