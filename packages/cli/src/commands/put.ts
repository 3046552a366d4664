import { fstat as fstatCallback } from 'node:fs';
import * as fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { InvalidArgumentError } from '@vde/engine';
import type { Readable } from 'node:stream';
import { write } from '../cli-io.js';
import { type Command, positionals, stringList } from '../command.js';
import { openExisting } from '../container.js';
import { formatBytes } from '../format.js';
import { UsageError } from '../usage-error.js';
import { printInfoJson } from './stat.js';

const fstat = promisify(fstatCallback);

/** Parses repeated `--meta k=v` into a metadata record. */
export function parseMetadata(pairs: readonly string[], command: string): Record<string, string> {
  const entries: [string, string][] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`${command}: --meta expects key=value, got ${JSON.stringify(pair)}`, command);
    entries.push([pair.slice(0, eq), pair.slice(eq + 1)]);
  }
  // fromEntries defines own properties (the last of a repeated name wins): an assignment of the name "__proto__"
  // set the object's prototype instead, and that metadata entry was dropped without a word.
  return Object.fromEntries(entries);
}

export const putCommand: Command = {
  name: 'put',
  summary: 'store a file (or stdin) under a key',
  usage: 'vde put <file> <key> [<path>|-] [--meta k=v ...]',
  help: `Stores the bytes of <path> under <key>, replacing any object with that key. With "-" or no <path>,
reads standard input. The command returns once the object is durable (fsynced).

Options:
  --meta k=v   metadata to store with the object (repeat for several)
  --json       print the stored object's info as JSON

Examples:
  vde put photos.vde cats/tom.jpg ./tom.jpg --meta type=image/jpeg
  echo hello | vde put photos.vde notes/hello.txt`,
  options: { meta: { type: 'string', multiple: true } },
  json: true,
  async run(ctx) {
    const [file, key, source] = positionals(ctx, 2, 3, '<file> <key> [<path>|-]') as [string, string, string | undefined];
    const metadata = parseMetadata(stringList(ctx, 'meta'), ctx.name);
    // Open the source first: a missing input file must not cost a container open.
    const handle = source === undefined || source === '-' ? undefined : await fs.open(source, 'r');
    try {
      // The container as its own source would be read while the store makes it grow: it would grow without end.
      const sourceStats = handle ? await handle.stat() : ctx.io.stdin === process.stdin ? await fstat(0).catch(() => undefined) : undefined;
      // Node gives a directory as standard input as an empty stream: that must not store an empty object.
      if (!handle && sourceStats?.isDirectory() === true) {
        throw Object.assign(new Error('standard input is a directory, not data to store'), { code: 'EISDIR' });
      }
      const container = sourceStats?.isFile() === true ? await fs.stat(file).catch(() => undefined) : undefined;
      if (sourceStats !== undefined && container !== undefined && sourceStats.dev === container.dev && sourceStats.ino === container.ino) {
        throw new InvalidArgumentError(`put: the source is the container ${file} itself: store another file`);
      }
      const data: Readable = handle ? handle.createReadStream({ autoClose: false }) : ctx.io.stdin;
      const vde = await openExisting(file);
      try {
        const info = await vde.store(key, data, { metadata });
        if (ctx.json) await printInfoJson(ctx.io.stdout, info);
        else await write(ctx.io.stdout, `stored ${key}: ${formatBytes(info.size)}, etag ${info.etag}\n`);
      } finally {
        await vde.close();
      }
    } finally {
      await handle?.close();
    }
    return 0;
  },
};
