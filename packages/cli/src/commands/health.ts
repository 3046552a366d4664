import { write, writeJson } from '../cli-io.js';
import { type Command, positionals } from '../command.js';
import { openExisting } from '../container.js';
import { formatBytes, formatCount, formatTable } from '../format.js';

export const healthCommand: Command = {
  name: 'health',
  summary: 'show space, log fill and error counters (healthy / degraded / critical)',
  usage: 'vde health <file>',
  help: `Shows the container's health: status (healthy, degraded or critical) with its reasons, objects, space
used and available, log fill and checksum errors seen. It opens the container read-only and reads only what the
report needs, so "checksum errors" counts what this run met (0 for a fresh open): to check every object and
index page, run vde scrub. The exit code is 0 whatever the status; scripts read "status" from --json.

Options:
  --json  print the health report as JSON

Example:
  vde health photos.vde`,
  options: {},
  json: true,
  async run(ctx) {
    const [file] = positionals(ctx, 1, 1, '<file>') as [string];
    const vde = await openExisting(file, { readOnly: true });
    try {
      const h = await vde.health();
      if (ctx.json) {
        await writeJson(ctx.io.stdout, h);
      } else {
        const rows = [
          ['status', h.reasons.length > 0 ? `${h.status} (${h.reasons.join('; ')})` : h.status],
          ['objects', formatCount(h.objectCount)],
          ['used', `${formatBytes(h.usedBytes)} of ${formatBytes(h.capacityBytes)} (${h.usedPercent.toFixed(1)}%)`],
          ['container', formatBytes(h.containerBytes)],
          ['log fill', `${h.walFillPercent.toFixed(1)}%`],
          ['checksum errors', formatCount(h.checksumErrors)],
          ['snapshots', formatCount(h.snapshots)],
        ];
        await write(ctx.io.stdout, `${formatTable(rows)}\n`);
      }
    } finally {
      await vde.close();
    }
    return 0;
  },
};
