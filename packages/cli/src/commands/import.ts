import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidKeyError } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, intOption, positionals, stringOption } from '../command.js';
import { openExisting, ownFilesOf } from '../container.js';
import { formatBytes, formatCount, formatDuration, formatRate } from '../format.js';
import { runPool } from '../pool.js';
import { ProgressBar } from '../progress.js';

/** Files at most this big are read whole; larger ones are streamed. */
const READ_WHOLE_BYTES = 4 << 20;

interface SourceFile {
  path: string;
  key: string;
  size: number;
}

/**
 * Regular files under `root`, keys with '/'. Symbolic links, special files, names that are not UTF-8 and the
 * container's own files (`isOwn`: the container itself, its lock files and reader table) are skipped and listed.
 */
async function walk(
  root: string,
  prefix: string,
  isOwn: (candidate: string, stats?: Stats) => Promise<boolean>,
): Promise<{ files: SourceFile[]; skipped: string[] }> {
  const files: SourceFile[] = [];
  const skipped: string[] = [];
  const visit = async (dir: string, rel: string): Promise<void> => {
    // Names as bytes: a name that is not UTF-8 cannot be a key (nor, decoded with U+FFFD, a path to the file).
    const entries = (await fs.readdir(dir, { withFileTypes: true, encoding: 'buffer' })).map((entry) => ({
      entry,
      name: entry.name.toString('utf8'),
    }));
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { entry, name } of entries) {
      const full = path.join(dir, name);
      const key = rel === '' ? name : `${rel}/${name}`;
      if (!Buffer.from(name, 'utf8').equals(entry.name)) {
        skipped.push(full);
      } else if (entry.isDirectory()) {
        if (await isOwn(full)) skipped.push(full);
        else await visit(full, key);
      } else if (entry.isFile()) {
        const st = await fs.stat(full);
        if (await isOwn(full, st)) skipped.push(full);
        else files.push({ path: full, key: prefix + key, size: st.size });
      } else {
        skipped.push(full);
      }
    }
  };
  const st = await fs.stat(root);
  if (!st.isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, ${root}`), { code: 'ENOTDIR' });
  await visit(root, '');
  return { files, skipped };
}

export const importCommand: Command = {
  name: 'import',
  summary: 'store a directory tree (keys = relative paths)',
  usage: 'vde import <file> <dir> [--prefix <p>] [--concurrency <n>]',
  help: `Stores every regular file under <dir> as one object whose key is its path relative to <dir>, with "/"
separators (symbolic links, special files, names that are not UTF-8 and, when it lies inside <dir>, the
container itself with its lock and reader files are skipped and listed). Up to --concurrency stores run at once; their fsyncs are shared (group commit),
so a tree of small files imports far faster than one store at a time.
Every object is durable when the command returns.

Options:
  --prefix <p>         put <p> in front of every key (e.g. "photos/")
  --concurrency <n>    stores in flight at once (default 64)
  --json               print { files, bytes, durationMs, skipped } as JSON

Example:
  vde import photos.vde ~/Pictures --prefix pictures/`,
  options: { prefix: { type: 'string' }, concurrency: { type: 'string' } },
  json: true,
  async run(ctx) {
    const [file, dir] = positionals(ctx, 2, 2, '<file> <dir>') as [string, string];
    const concurrency = intOption(ctx, 'concurrency', 64, 1, 4096);
    const { files, skipped } = await walk(dir, stringOption(ctx, 'prefix') ?? '', await ownFilesOf(file));
    const vde = await openExisting(file);
    const started = performance.now();
    let bytes = 0;
    let stored = 0;
    try {
      // Every key is checked before the first store: with stores in flight, a file deep in the tree whose key is too
      // long stopped the import after whichever files happened to finish first.
      const tooLong = files.filter((f) => Buffer.byteLength(f.key, 'utf8') > vde.maxKeyBytes);
      if (tooLong.length > 0) {
        const shown = tooLong.slice(0, 10).map((f) => `  ${f.path} (key of ${formatCount(Buffer.byteLength(f.key, 'utf8'))} bytes)\n`);
        const more = tooLong.length > shown.length ? `  … and ${formatCount(tooLong.length - shown.length)} more\n` : '';
        throw new InvalidKeyError(
          `import refused, nothing stored: ${formatCount(tooLong.length)} of ${formatCount(files.length)} files would get a key longer than this ` +
            `container's limit of ${formatCount(vde.maxKeyBytes)} UTF-8 bytes (shorten --prefix or the paths):\n${shown.join('')}${more}vde: key too long`,
        );
      }
      const bar = new ProgressBar(ctx.io.stderr, 'import', files.length);
      await runPool(files, concurrency, async (f) => {
        if (f.size <= READ_WHOLE_BYTES) {
          await vde.store(f.key, await fs.readFile(f.path));
        } else {
          const handle = await fs.open(f.path, 'r');
          try {
            await vde.store(f.key, handle.createReadStream({ autoClose: false }));
          } finally {
            await handle.close();
          }
        }
        bytes += f.size;
        stored++;
        bar.tick(1, f.size);
      }).catch(async (err: unknown) => {
        bar.finish();
        // The stores that completed are durable: say how many there are (the error follows on its own line).
        await write(ctx.io.stderr, `vde: import stopped: ${formatCount(stored)} of ${formatCount(files.length)} files were stored\n`);
        throw err;
      });
      bar.finish();
    } finally {
      await vde.close();
    }
    const durationMs = performance.now() - started;
    if (ctx.json) {
      await writeJson(ctx.io.stdout, { files: files.length, bytes, durationMs, skipped });
    } else {
      await write(
        ctx.io.stdout,
        `imported ${formatCount(files.length)} files (${formatBytes(bytes)}) in ${formatDuration(durationMs)}: ` +
          `${formatRate(files.length, durationMs)}, ${formatBytes((bytes * 1000) / Math.max(durationMs, 1))}/s\n`,
      );
      if (skipped.length > 0) {
        await write(
          ctx.io.stdout,
          `skipped ${formatCount(skipped.length)} (links, special files, names that are not UTF-8, the container's own files):\n${skipped.map((f) => `  ${f}\n`).join('')}`,
        );
      }
    }
    return 0;
  },
};
