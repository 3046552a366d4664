import type { ListOptions, ObjectInfo } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, flag, intOption, positionals, stringOption } from '../command.js';
import { openExisting } from '../container.js';
import { formatBytes, formatTable } from '../format.js';
import { withReader } from './reader.js';
import { infoToJson } from './stat.js';

export const lsCommand: Command = {
  name: 'ls',
  summary: 'list objects in key order',
  usage: 'vde ls <file> [--prefix <p>] [--long] [--limit <n>] [--reverse]',
  help: `Lists keys in the byte order of their UTF-8 encoding, one per line.

Options:
  --prefix <p>       only keys that start with <p>
  --start <key>      first key (inclusive)
  --end <key>        stop before this key
  -l, --long         also show size and modification time
  -n, --limit <n>    at most <n> objects
  -r, --reverse      descending order
  --snapshot <name>  list a named snapshot instead of the live store
  --json             print an array of objects (key, size, created, modified, etag, metadata)

Examples:
  vde ls photos.vde --prefix cats/ --long
  vde ls photos.vde --reverse --limit 10`,
  options: {
    prefix: { type: 'string' },
    start: { type: 'string' },
    end: { type: 'string' },
    long: { type: 'boolean', short: 'l' },
    limit: { type: 'string', short: 'n' },
    reverse: { type: 'boolean', short: 'r' },
    snapshot: { type: 'string' },
  },
  json: true,
  async run(ctx) {
    const [file] = positionals(ctx, 1, 1, '<file>') as [string];
    const options: ListOptions = { reverse: flag(ctx, 'reverse') };
    const prefix = stringOption(ctx, 'prefix');
    const start = stringOption(ctx, 'start');
    const end = stringOption(ctx, 'end');
    if (prefix !== undefined) options.prefix = prefix;
    if (start !== undefined) options.start = start;
    if (end !== undefined) options.end = end;
    if (ctx.values.limit !== undefined) options.limit = intOption(ctx, 'limit', 0, 0);
    const long = flag(ctx, 'long');
    const vde = await openExisting(file, { readOnly: true });
    try {
      const infos = await withReader(vde, stringOption(ctx, 'snapshot'), async (reader) => {
        const all: ObjectInfo[] = [];
        for await (const info of reader.list(options)) {
          if (ctx.json || long) all.push(info);
          else await write(ctx.io.stdout, `${info.key}\n`);
        }
        return all;
      });
      if (ctx.json) {
        await writeJson(ctx.io.stdout, infos.map(infoToJson));
      } else if (long && infos.length > 0) {
        const rows = infos.map((i) => [formatBytes(i.size), i.modified.toISOString().replace('T', ' ').slice(0, 19), i.key]);
        await write(ctx.io.stdout, `${formatTable(rows, [0])}\n`);
      }
    } finally {
      await vde.close();
    }
    return 0;
  },
};
