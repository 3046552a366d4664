import { write, writeJson } from '../cli-io.js';
import { type Command, flag, positionals } from '../command.js';
import { openExisting } from '../container.js';

export const rmCommand: Command = {
  name: 'rm',
  summary: 'delete objects',
  usage: 'vde rm <file> <key...> [--force]',
  help: `Deletes each <key>. A key that does not exist is an error (exit 1, ERR_VDE_NOT_FOUND) unless --force;
the other keys are still deleted.

Options:
  -f, --force  ignore keys that do not exist
  --json       print { removed: [...], missing: [...] }

Example:
  vde rm photos.vde cats/tom.jpg cats/felix.jpg`,
  options: { force: { type: 'boolean', short: 'f' } },
  json: true,
  async run(ctx) {
    const [file, ...keys] = positionals(ctx, 2, Infinity, '<file> <key...>') as [string, ...string[]];
    const vde = await openExisting(file);
    const removed: string[] = [];
    const missing: string[] = [];
    try {
      for (const key of keys) {
        if (await vde.delete(key)) removed.push(key);
        else missing.push(key);
      }
    } finally {
      await vde.close();
    }
    const force = flag(ctx, 'force');
    if (ctx.json) {
      await writeJson(ctx.io.stdout, { removed, missing });
    } else {
      for (const key of removed) await write(ctx.io.stdout, `removed ${key}\n`);
    }
    if (!force) {
      for (const key of missing) await write(ctx.io.stderr, `vde: no object ${JSON.stringify(key)} (ERR_VDE_NOT_FOUND)\n`);
    }
    return missing.length > 0 && !force ? 1 : 0;
  },
};
