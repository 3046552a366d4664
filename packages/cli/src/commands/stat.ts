import type { Writable } from 'node:stream';
import type { ObjectInfo } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, positionals, stringOption } from '../command.js';
import { openExisting } from '../container.js';
import { formatBytes, formatCount, formatTable } from '../format.js';
import { withReader } from './reader.js';

/** The JSON shape of an ObjectInfo (dates as ISO strings). */
export function infoToJson(info: ObjectInfo): Record<string, unknown> {
  return {
    key: info.key,
    size: info.size,
    created: info.created.toISOString(),
    modified: info.modified.toISOString(),
    etag: info.etag,
    metadata: info.metadata,
  };
}

export function printInfoJson(stream: Writable, info: ObjectInfo): Promise<void> {
  return writeJson(stream, infoToJson(info));
}

export const statCommand: Command = {
  name: 'stat',
  summary: "show an object's size, dates, etag and metadata",
  usage: 'vde stat <file> <key> [--snapshot <name>]',
  help: `Shows what the container knows about one object, without reading its bytes.

Options:
  --snapshot <name>  look in a named snapshot instead of the live store
  --json             print the info as JSON

Example:
  vde stat photos.vde cats/tom.jpg`,
  options: { snapshot: { type: 'string' } },
  json: true,
  async run(ctx) {
    const [file, key] = positionals(ctx, 2, 2, '<file> <key>') as [string, string];
    const vde = await openExisting(file, { readOnly: true });
    try {
      const info = await withReader(vde, stringOption(ctx, 'snapshot'), (reader) => reader.stat(key));
      if (ctx.json) {
        await printInfoJson(ctx.io.stdout, info);
      } else {
        const meta = Object.entries(info.metadata);
        const rows = [
          ['key', info.key],
          ['size', `${formatBytes(info.size)} (${formatCount(info.size)} bytes)`],
          ['created', info.created.toISOString()],
          ['modified', info.modified.toISOString()],
          ['etag', info.etag],
          ['metadata', meta.length === 0 ? '(none)' : meta.map(([k, v]) => `${k}=${v}`).join(', ')],
        ];
        await write(ctx.io.stdout, `${formatTable(rows)}\n`);
      }
    } finally {
      await vde.close();
    }
    return 0;
  },
};
