import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ListOptions, ObjectInfo } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, intOption, positionals, stringOption } from '../command.js';
import { openExisting, ownFilesOf } from '../container.js';
import { formatBytes, formatCount, formatDuration } from '../format.js';
import { removeOnInterrupt } from '../interrupt.js';
import { partialPathFor } from '../partial-file.js';
import { runPool } from '../pool.js';
import { ProgressBar } from '../progress.js';

/** Objects at most this big are read whole; larger ones are streamed. */
const READ_WHOLE_BYTES = 4 << 20;

/** The longest file name most file systems take (NAME_MAX on Linux and macOS). */
const MAX_NAME_BYTES = 255;

/** The file path for `key` under `root`, or undefined if the key cannot be a path there ("..", "", "/x"). */
export function keyToPath(root: string, key: string): string | undefined {
  const parts = key.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0') || (path.sep === '\\' && /[\\:]/.test(p)))) {
    return undefined;
  }
  return path.join(root, ...parts);
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'write objects out as a directory tree',
  usage: 'vde export <file> <dir> [--prefix <p>] [--concurrency <n>]',
  help: `Writes every object (or those whose key starts with --prefix) to <dir>/<key>, creating directories for
the "/" in keys. Keys that cannot be a relative path (empty segments, "." or "..", a segment over 255 bytes), a
key that is also the directory of other keys ("a" beside "a/b") and a key whose file would be the container itself
or its lock or reader files (exporting into the container's directory) are not written: they are listed and the
command exits 1. Other existing files are replaced: each object goes to a temporary file that is renamed into place
once complete and verified, so a damaged object (ERR_VDE_CORRUPT, which stops the export) leaves no file behind.

Options:
  --prefix <p>       only keys that start with <p> (the full key is still the path)
  --concurrency <n>  objects written at once (default 16)
  --json             print { files, bytes, durationMs, skipped } as JSON

Example:
  vde export photos.vde ./restored --prefix pictures/`,
  options: { prefix: { type: 'string' }, concurrency: { type: 'string' } },
  json: true,
  async run(ctx) {
    const [file, dir] = positionals(ctx, 2, 2, '<file> <dir>') as [string, string];
    const concurrency = intOption(ctx, 'concurrency', 16, 1, 4096);
    const prefix = stringOption(ctx, 'prefix');
    const vde = await openExisting(file, { readOnly: true });
    const isOwn = await ownFilesOf(file);
    const started = performance.now();
    const skipped: string[] = [];
    const reasons = new Map<string, string>();
    let bytes = 0;
    let files = 0;
    try {
      const options: ListOptions = prefix === undefined ? {} : { prefix };
      const infos: ObjectInfo[] = [];
      for await (const info of vde.list(options)) infos.push(info);
      // A key that is also a directory of other keys ("a" and "a/b") cannot be both a file and a directory: it is
      // skipped (and reported) before anything is written, instead of failing halfway with EISDIR.
      const directories = new Set<string>();
      for (const info of infos) for (let i = info.key.indexOf('/'); i > 0; i = info.key.indexOf('/', i + 1)) directories.add(info.key.slice(0, i));
      await fs.mkdir(dir, { recursive: true });
      const bar = new ProgressBar(ctx.io.stderr, 'export', infos.length);
      const writing = new Set<string>(); // the temporary files being written
      const exported = runPool(infos, concurrency, async (info) => {
        const target = keyToPath(dir, info.key);
        const reason =
          target === undefined
            ? 'is not a relative path'
            : directories.has(info.key)
              ? 'is also the directory of other keys'
              : info.key.split('/').some((part) => Buffer.byteLength(part) > MAX_NAME_BYTES)
                ? `has a path segment longer than ${MAX_NAME_BYTES} bytes (too long for a file name)`
              : (await isOwn(target))
                ? 'would overwrite the container or its lock or reader files'
                : undefined;
        if (target === undefined || reason !== undefined) {
          skipped.push(info.key);
          reasons.set(info.key, reason ?? 'was skipped');
          return;
        }
        await fs.mkdir(path.dirname(target), { recursive: true });
        // Written to a temporary file and renamed into place when complete, as `get -o` does: a large object is
        // streamed and its checksum is checked only at its end, so writing the target directly left a file with the
        // damaged bytes (cut short where the stream failed) at the key's path, in place of any file that was there.
        const temporary = partialPathFor(target);
        writing.add(temporary);
        try {
          if (info.size <= READ_WHOLE_BYTES) {
            await fs.writeFile(temporary, await vde.retrieve(info.key));
          } else {
            await pipeline(vde.createReadStream(info.key), (await fs.open(temporary, 'w')).createWriteStream());
          }
          await fs.rename(temporary, target);
        } catch (err) {
          await fs.rm(temporary, { force: true });
          throw err;
        } finally {
          writing.delete(temporary);
        }
        files++;
        bytes += info.size;
        bar.tick(1, info.size);
      });
      // Ctrl-C (SIGINT, SIGTERM, SIGHUP) removes the temporary files being written before the process ends.
      await removeOnInterrupt(() => [...writing], () => exported);
      bar.finish();
    } finally {
      await vde.close();
    }
    const durationMs = performance.now() - started;
    if (ctx.json) {
      await writeJson(ctx.io.stdout, { files, bytes, durationMs, skipped });
    } else {
      await write(ctx.io.stdout, `exported ${formatCount(files)} objects (${formatBytes(bytes)}) to ${dir} in ${formatDuration(durationMs)}\n`);
      for (const key of skipped) await write(ctx.io.stderr, `vde: key ${JSON.stringify(key)} ${reasons.get(key) ?? 'was skipped'}; not exported\n`);
    }
    return skipped.length > 0 ? 1 : 0;
  },
};
