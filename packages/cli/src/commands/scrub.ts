import { write, writeJson } from '../cli-io.js';
import { type Command, positionals } from '../command.js';
import { openExisting } from '../container.js';
import { formatBytes, formatCount, formatDuration } from '../format.js';
import { ProgressBar } from '../progress.js';

export const scrubCommand: Command = {
  name: 'scrub',
  summary: 'read and verify every index page and every object checksum',
  usage: 'vde scrub <file>',
  help: `Reads every index page and every object and verifies their checksums, with a progress bar on a terminal.
Problems are listed (key, code, message); the command exits 1 if there is any.

Options:
  --json  print the scrub report as JSON

Example:
  vde scrub photos.vde`,
  options: {},
  json: true,
  async run(ctx) {
    const [file] = positionals(ctx, 1, 1, '<file>') as [string];
    const vde = await openExisting(file, { readOnly: true });
    try {
      const total = (await vde.health()).objectCount;
      const bar = new ProgressBar(ctx.io.stderr, 'scrub', total);
      const report = await vde.scrub({ onProgress: (p) => bar.update(p.objectsChecked, p.bytesChecked) });
      bar.finish();
      if (ctx.json) {
        await writeJson(ctx.io.stdout, report);
      } else {
        const what = `${formatCount(report.objectsChecked)} objects, ${formatBytes(report.bytesChecked)} verified, index ${report.indexChecked ? 'ok' : 'damaged'}`;
        await write(ctx.io.stdout, `scrub ${report.ok ? 'ok' : 'FAILED'}: ${what}, ${formatDuration(report.durationMs)}\n`);
        for (const p of report.problems) {
          await write(ctx.io.stdout, `  ${p.key === undefined ? '(index)' : p.key}: ${p.message} (${p.code})\n`);
        }
      }
      return report.ok ? 0 : 1;
    } finally {
      await vde.close();
    }
  },
};
