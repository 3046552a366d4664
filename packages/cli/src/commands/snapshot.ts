import { NotFoundError, type SnapshotInfo } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import type { Command } from '../command.js';
import { openExisting } from '../container.js';
import { formatCount, formatTable } from '../format.js';
import { UsageError } from '../usage-error.js';

function snapshotJson(s: SnapshotInfo): Record<string, unknown> {
  return { name: s.name, created: s.created.toISOString(), generation: s.generation, objectCount: s.objectCount };
}

export const snapshotCommand: Command = {
  name: 'snapshot',
  summary: 'create, list or remove named snapshots',
  usage: 'vde snapshot create|list|rm <file> [<name>]',
  help: `Named snapshots are point-in-time views that survive reopening; their blocks are kept until removed.
Read them with "vde ls|get|stat <file> ... --snapshot <name>".

  vde snapshot create <file> <name>   take a snapshot of the current state
  vde snapshot list <file>            list snapshots (oldest first)
  vde snapshot rm <file> <name>       remove a snapshot and release its blocks

Options:
  --json  print the result as JSON

Examples:
  vde snapshot create photos.vde before-cleanup
  vde ls photos.vde --snapshot before-cleanup`,
  options: {},
  json: true,
  async run(ctx) {
    const [action, file, name, extra] = ctx.positionals;
    const usage = (msg: string): UsageError => new UsageError(`snapshot: ${msg}`, ctx.name);
    if (action === undefined) throw usage('missing action (create, list or rm)');
    if (action !== 'create' && action !== 'list' && action !== 'rm') throw usage(`unknown action ${JSON.stringify(action)} (create, list or rm)`);
    if (file === undefined) throw usage('missing <file>');
    if (action === 'list' && name !== undefined) throw usage(`unexpected argument ${JSON.stringify(name)}`);
    if (action !== 'list' && name === undefined) throw usage('missing <name>');
    if (extra !== undefined) throw usage(`unexpected argument ${JSON.stringify(extra)}`);
    const vde = await openExisting(file, { readOnly: action === 'list' });
    try {
      if (action === 'list') {
        const list = vde.listSnapshots();
        if (ctx.json) {
          await writeJson(ctx.io.stdout, list.map(snapshotJson));
        } else if (list.length > 0) {
          const rows = [['NAME', 'CREATED', 'OBJECTS'], ...list.map((s) => [s.name, s.created.toISOString(), formatCount(s.objectCount)])];
          await write(ctx.io.stdout, `${formatTable(rows)}\n`);
        }
      } else if (action === 'create') {
        const info = await vde.createSnapshot(name!);
        if (ctx.json) await writeJson(ctx.io.stdout, snapshotJson(info));
        else await write(ctx.io.stdout, `created snapshot ${info.name} (${formatCount(info.objectCount)} objects)\n`);
      } else {
        if (!(await vde.deleteSnapshot(name!))) throw new NotFoundError(`no snapshot named ${JSON.stringify(name)}`);
        if (ctx.json) await writeJson(ctx.io.stdout, { removed: name });
        else await write(ctx.io.stdout, `removed snapshot ${name}\n`);
      }
    } finally {
      await vde.close();
    }
    return 0;
  },
};
