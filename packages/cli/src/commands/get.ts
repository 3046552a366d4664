import * as fs from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { type Command, positionals, stringOption } from '../command.js';
import { openExisting } from '../container.js';
import { withReader } from './reader.js';

export const getCommand: Command = {
  name: 'get',
  summary: "write an object's bytes to stdout or a file",
  usage: 'vde get <file> <key> [-o <path>] [--snapshot <name>]',
  help: `Streams the object's bytes (1 MiB at a time, checksums verified) to standard output, or to <path>.
With -o, the bytes go to a temporary file next to <path> that is renamed into place only when complete.

Options:
  -o, --output <path>  write to this file instead of standard output
  --snapshot <name>    read from a named snapshot instead of the live store

Examples:
  vde get photos.vde cats/tom.jpg -o tom.jpg
  vde get photos.vde notes/hello.txt | wc -c`,
  options: { output: { type: 'string', short: 'o' }, snapshot: { type: 'string' } },
  json: false,
  async run(ctx) {
    const [file, key] = positionals(ctx, 2, 2, '<file> <key>') as [string, string];
    const output = stringOption(ctx, 'output');
    const vde = await openExisting(file, { readOnly: true });
    try {
      await withReader(vde, stringOption(ctx, 'snapshot'), async (reader) => {
        // stat first, so a missing key fails before any output file exists.
        await reader.stat(key);
        if (output === undefined) {
          await pipeline(reader.createReadStream(key), ctx.io.stdout, { end: false });
          return;
        }
        const temporary = `${output}.vde-partial-${process.pid}`;
        try {
          const handle = await fs.open(temporary, 'w');
          await pipeline(reader.createReadStream(key), handle.createWriteStream());
          await fs.rename(temporary, output);
        } catch (err) {
          await fs.rm(temporary, { force: true });
          throw err;
        }
      });
    } finally {
      await vde.close();
    }
    return 0;
  },
};
