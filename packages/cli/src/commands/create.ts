import * as fs from 'node:fs/promises';
import { ExistsError, VirtualDiskEngine } from '@vde/engine';
import { writeJson, write } from '../cli-io.js';
import { type Command, intOption, positionals } from '../command.js';
import { formatBytes } from '../format.js';
import { UsageError } from '../usage-error.js';

export const createCommand: Command = {
  name: 'create',
  summary: 'create an empty container file',
  usage: 'vde create <file> [--block-size <n>] [--wal-size <n>]',
  help: `Creates a new, empty container. Fails if <file> already exists.

Options:
  --block-size <n>  block size: a power of two from 512 to 64k (default 4k)
  --wal-size <n>    size of the write-ahead log region (default 32m)
  --json            print the result as JSON

Sizes accept k/m/g suffixes (powers of 1024).

Example:
  vde create photos.vde --block-size 8k`,
  options: { 'block-size': { type: 'string' }, 'wal-size': { type: 'string' } },
  json: true,
  async run(ctx) {
    const [file] = positionals(ctx, 1, 1, '<file>') as [string];
    const blockSize = intOption(ctx, 'block-size', 4096, 512, 65536);
    if ((blockSize & (blockSize - 1)) !== 0) {
      throw new UsageError(`create: --block-size must be a power of two from 512 to 64k, got ${blockSize}`, ctx.name);
    }
    const walSizeBytes = intOption(ctx, 'wal-size', 32 << 20, 64 << 10);
    const exists = await fs.stat(file).then(
      () => true,
      (err: { code?: unknown }) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    if (exists) throw new ExistsError(`${file} already exists (remove it first, or use it as it is)`);
    const vde = await VirtualDiskEngine.open(file, { create: true, blockSize, walSizeBytes });
    await vde.close();
    const containerBytes = (await fs.stat(file)).size;
    if (ctx.json) {
      await writeJson(ctx.io.stdout, { path: file, blockSize, walSizeBytes, containerBytes });
    } else {
      await write(
        ctx.io.stdout,
        `created ${file}: block size ${formatBytes(blockSize)}, log ${formatBytes(walSizeBytes)}, file ${formatBytes(containerBytes)}\n`,
      );
    }
    return 0;
  },
};
