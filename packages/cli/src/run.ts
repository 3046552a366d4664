import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { VdeError } from '@vde/engine';
import { type CliIo, write } from './cli-io.js';
import type { Command, OptionSpecs, OptionValues } from './command.js';
import { benchCommand } from './commands/bench.js';
import { checkCommand } from './commands/check.js';
import { createCommand } from './commands/create.js';
import { demoCommand } from './commands/demo.js';
import { exportCommand } from './commands/export.js';
import { getCommand } from './commands/get.js';
import { healthCommand } from './commands/health.js';
import { importCommand } from './commands/import.js';
import { lsCommand } from './commands/ls.js';
import { putCommand } from './commands/put.js';
import { rmCommand } from './commands/rm.js';
import { scrubCommand } from './commands/scrub.js';
import { snapshotCommand } from './commands/snapshot.js';
import { statCommand } from './commands/stat.js';
import { formatTable } from './format.js';
import { UsageError } from './usage-error.js';

const COMMANDS: readonly Command[] = [
  demoCommand,
  createCommand,
  putCommand,
  getCommand,
  lsCommand,
  rmCommand,
  statCommand,
  checkCommand,
  scrubCommand,
  healthCommand,
  snapshotCommand,
  importCommand,
  exportCommand,
  benchCommand,
];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

function mainHelp(): string {
  const rows = COMMANDS.map((c) => [`  ${c.name}`, c.summary]);
  return `vde: an object store in one file (VDE container)

Usage: vde <command> [arguments] [options]

Commands:
${formatTable(rows)}

Every command takes --help. Commands that print data take --json. --debug shows stack traces.
Exit codes: 0 ok, 1 error (the code is printed, e.g. ERR_VDE_NOT_FOUND), 2 bad usage.
Start with: vde demo
`;
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}${c.json ? ' [--json]' : ''}\n\n${c.help}\n`;
}

/** The code of a typed engine error or a Node system error (`ENOENT`), if any. */
function errorCode(err: unknown): string | undefined {
  if (err instanceof VdeError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

async function dispatch(argv: readonly string[], io: CliIo): Promise<number> {
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (name === undefined) {
    await write(io.stderr, mainHelp());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const target = rest[0] === undefined ? undefined : COMMANDS.find((c) => c.name === rest[0]);
    if (rest[0] !== undefined && !target) throw new UsageError(`unknown command ${JSON.stringify(rest[0])}`);
    await write(io.stdout, target ? commandHelp(target) : mainHelp());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    await write(io.stdout, `${version()}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    throw new UsageError(name.startsWith('-') ? `unknown option ${name} (a command comes first)` : `unknown command ${JSON.stringify(name)}`);
  }
  const options: OptionSpecs = { ...command.options, help: { type: 'boolean', short: 'h' } };
  if (command.json) options.json = { type: 'boolean' };
  let parsed: { values: OptionValues; positionals: string[] };
  try {
    const result = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
    parsed = { values: result.values, positionals: result.positionals };
  } catch (err) {
    if (errorCode(err)?.startsWith('ERR_PARSE_ARGS')) throw new UsageError(`${name}: ${(err as Error).message}`, name);
    throw err;
  }
  if (parsed.values.help === true) {
    await write(io.stdout, commandHelp(command));
    return 0;
  }
  return command.run({ io, name, values: parsed.values, positionals: parsed.positionals, json: parsed.values.json === true });
}

/**
 * Runs one `vde` command line (`argv` without the node and script paths) and resolves with its exit code:
 * 0 ok, 1 error (typed `VdeError` or I/O), 2 usage error. Never exits the process and never throws: errors
 * are printed on `io.stderr` as `vde: <message> (<code>)` (with the stack trace only under `--debug`).
 */
export async function run(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const streams: CliIo = { stdout: io.stdout ?? process.stdout, stderr: io.stderr ?? process.stderr, stdin: io.stdin ?? process.stdin };
  const debug = argv.includes('--debug');
  // A failed stdout or stderr (a closed pipe: vde ls | head) also emits 'error'; without a listener that event
  // would end the process. The failure itself reaches the command through its write callback or pipeline.
  const ignore = (): void => undefined;
  streams.stdout.on('error', ignore);
  streams.stderr.on('error', ignore);
  try {
    return await dispatch(argv, streams);
  } catch (err) {
    const code = errorCode(err);
    // A closed pipe (vde get ... | head) is the reader's choice, not a failure.
    if (code === 'EPIPE') return 0;
    try {
      if (err instanceof UsageError) {
        const hint = err.command === undefined ? 'vde --help' : `vde ${err.command} --help`;
        await write(streams.stderr, `vde: ${err.message}\nRun '${hint}' for usage.\n`);
        return 2;
      }
      const message = err instanceof Error ? err.message : String(err);
      await write(streams.stderr, `vde: ${message}${code === undefined ? '' : ` (${code})`}\n`);
      if (debug && err instanceof Error && err.stack !== undefined) await write(streams.stderr, `${err.stack}\n`);
      else if (!(err instanceof VdeError) && code === undefined) await write(streams.stderr, 'vde: (an unexpected error; run with --debug for the stack trace)\n');
    } catch {
      // stderr itself failed: nothing left to report on.
    }
    return 1;
  } finally {
    // Kept when run() owns the process's streams: a closed pipe may still report after the last write.
    if (io.stdout !== undefined) streams.stdout.off('error', ignore);
    if (io.stderr !== undefined) streams.stderr.off('error', ignore);
  }
}
