import { VdeError } from '@vde/engine';
import { write, writeJson } from '../cli-io.js';
import { type Command, flag, positionals } from '../command.js';
import { openExisting } from '../container.js';

export const rmCommand: Command = {
  name: 'rm',
  summary: 'delete objects',
  usage: 'vde rm <file> <key...> [--force]',
  help: `Deletes each <key>. A key that does not exist is an error (exit 1, ERR_VDE_NOT_FOUND) unless --force, and so is
a key the container cannot hold (ERR_VDE_INVALID_KEY, also with --force); the other keys are still deleted.

Options:
  -f, --force  ignore keys that do not exist
  --json       print { removed: [...], missing: [...] } (and invalid: [...] when there are such keys)

Example:
  vde rm photos.vde cats/tom.jpg cats/felix.jpg`,
  options: { force: { type: 'boolean', short: 'f' } },
  json: true,
  async run(ctx) {
    const [file, ...keys] = positionals(ctx, 2, Infinity, '<file> <key...>') as [string, ...string[]];
    const vde = await openExisting(file);
    const removed: string[] = [];
    const missing: string[] = [];
    // A key the engine refuses (ERR_VDE_INVALID_KEY) is reported like a missing one, and the other keys are still
    // deleted; any other failure stops the command, after it reported the keys it has deleted.
    const invalid: { key: string; message: string }[] = [];
    let failure: { error: unknown } | undefined;
    try {
      for (const key of keys) {
        try {
          if (await vde.delete(key)) removed.push(key);
          else missing.push(key);
        } catch (error) {
          if (!(error instanceof VdeError && error.code === 'ERR_VDE_INVALID_KEY')) {
            failure = { error };
            break;
          }
          invalid.push({ key, message: error.message });
        }
      }
    } finally {
      await vde.close();
    }
    const force = flag(ctx, 'force');
    if (ctx.json) {
      await writeJson(ctx.io.stdout, invalid.length > 0 ? { removed, missing, invalid: invalid.map((i) => i.key) } : { removed, missing });
    } else {
      for (const key of removed) await write(ctx.io.stdout, `removed ${key}\n`);
    }
    for (const { key, message } of invalid) await write(ctx.io.stderr, `vde: ${JSON.stringify(key)}: ${message} (ERR_VDE_INVALID_KEY)\n`);
    if (!force) {
      for (const key of missing) await write(ctx.io.stderr, `vde: no object ${JSON.stringify(key)} (ERR_VDE_NOT_FOUND)\n`);
    }
    if (failure) throw failure.error;
    return (missing.length > 0 && !force) || invalid.length > 0 ? 1 : 0;
  },
};
