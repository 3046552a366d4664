import { write, writeJson } from '../cli-io.js';
import { type Command, positionals } from '../command.js';
import { openExisting } from '../container.js';
import { formatCount } from '../format.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'check the index and block bookkeeping (fast, reads no object data)',
  usage: 'vde check <file>',
  help: `Checks the container's structure: index pages, the allocator, and that every block an object owns is
allocated and owned once. It reads no object data (use "vde scrub" for that). Damage exits 1 with
ERR_VDE_CORRUPT and names the first problem found. Takes the container's write lock (recovery may write).

Options:
  --json  print the report as JSON

Example:
  vde check photos.vde`,
  options: {},
  json: true,
  async run(ctx) {
    const [file] = positionals(ctx, 1, 1, '<file>') as [string];
    const vde = await openExisting(file);
    try {
      const report = await vde.check();
      if (ctx.json) {
        await writeJson(ctx.io.stdout, { ok: true, ...report });
      } else {
        await write(
          ctx.io.stdout,
          `ok: ${formatCount(report.objects)} objects, ${formatCount(report.blocksReferenced)} blocks referenced, ` +
            `${formatCount(report.pendingFreeBlocks)} blocks waiting to be freed\n`,
        );
      }
    } finally {
      await vde.close();
    }
    return 0;
  },
};
