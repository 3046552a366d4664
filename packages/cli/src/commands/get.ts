import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ExistsError } from '@vde/engine';
import { type Command, positionals, stringOption } from '../command.js';
import { openExisting, ownFilesOf } from '../container.js';
import { removeOnInterrupt } from '../interrupt.js';
import { partialPathFor } from '../partial-file.js';
import { withReader } from './reader.js';

/** Objects up to this size go to standard output only once their checksum is verified. */
const VERIFY_FIRST_BYTES = 256 << 20;

export const getCommand: Command = {
  name: 'get',
  summary: "write an object's bytes to stdout or a file",
  usage: 'vde get <file> <key> [-o <path>] [--snapshot <name>]',
  help: `Writes the object's bytes to standard output, or to <path>; checksums are verified.
To standard output, an object up to 256 MiB is verified whole before its first byte is written (damage: an error,
no output); a larger one is streamed 1 MiB at a time and damage found at its end comes after its bytes (exit 1).
With -o, the bytes go to a temporary file next to <path> (next to the file it leads to, when <path> is a symbolic
link) that is renamed into place only when complete; a device or named pipe (-o /dev/null) is written to directly;
a directory is refused (EISDIR) before anything is read.

Options:
  -o, --output <path>  write to this file instead of standard output (- is standard output)
  --snapshot <name>    read from a named snapshot instead of the live store

Examples:
  vde get photos.vde cats/tom.jpg -o tom.jpg
  vde get photos.vde notes/hello.txt | wc -c`,
  options: { output: { type: 'string', short: 'o' }, snapshot: { type: 'string' } },
  json: false,
  async run(ctx) {
    const [file, key] = positionals(ctx, 2, 2, '<file> <key>') as [string, string];
    const chosen = stringOption(ctx, 'output');
    // `-o -` is standard output, as with curl and tar.
    const output = chosen === '-' ? undefined : chosen;
    const vde = await openExisting(file, { readOnly: true });
    try {
      if (output !== undefined && (await (await ownFilesOf(file))(output))) {
        throw new ExistsError(`${output} is the container itself or one of its lock or reader files: choose another output path`);
      }
      await withReader(vde, stringOption(ctx, 'snapshot'), async (reader) => {
        // stat first, so a missing key fails before any output file exists.
        const info = await reader.stat(key);
        if (output === undefined) {
          // Standard output cannot be taken back: an object up to VERIFY_FIRST_BYTES is read and verified whole
          // before its first byte is written, so damage is an error with no output. A larger one is streamed, and
          // damage found at its end comes after the bytes (exit 1).
          if (info.size <= VERIFY_FIRST_BYTES) {
            const bytes = await reader.retrieve(key);
            await new Promise<void>((resolve, reject) => ctx.io.stdout.write(bytes, (err) => (err ? reject(err) : resolve())));
            return;
          }
          await pipeline(reader.createReadStream(key), ctx.io.stdout, { end: false });
          return;
        }
        const existing = await fs.stat(output).catch(() => undefined);
        // A directory (or a link to one) is refused before a byte is read: the rename below would fail only after
        // the whole object went to a temporary file beside the directory, in its parent.
        if (existing?.isDirectory() === true) {
          throw Object.assign(new Error(`get: -o ${output} is a directory: name the file to write, e.g. -o ${path.join(output, path.posix.basename(key))}`), {
            code: 'EISDIR',
          });
        }
        // A device, FIFO or socket (-o /dev/null, a named pipe) is written to directly: the temporary file and
        // rename below would replace the device node itself with a regular file.
        if (existing !== undefined && !existing.isFile()) {
          const handle = await fs.open(output, 'w');
          await pipeline(reader.createReadStream(key), handle.createWriteStream());
          return;
        }
        // Through a symbolic link (-o /dev/stdout, a link to a file) the file it leads to is replaced, not the link.
        const target = existing === undefined ? output : await fs.realpath(output);
        const temporary = partialPathFor(target);
        // Ctrl-C (SIGINT, SIGTERM, SIGHUP) meanwhile removes the temporary file before the process ends.
        await removeOnInterrupt(
          () => [temporary],
          async () => {
            try {
              const handle = await fs.open(temporary, 'w');
              await pipeline(reader.createReadStream(key), handle.createWriteStream());
              await fs.rename(temporary, target);
            } catch (err) {
              await fs.rm(temporary, { force: true });
              throw err;
            }
          },
        );
      });
    } finally {
      await vde.close();
    }
    return 0;
  },
};
