import type { ParseArgsConfig } from 'node:util';
import type { CliIo } from './cli-io.js';
import { UsageError } from './usage-error.js';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** What a command gets: its streams, its parsed options and its positional arguments. */
export interface CommandContext {
  readonly io: CliIo;
  readonly name: string;
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  /** `--json` was given: print exactly one JSON document on stdout. */
  readonly json: boolean;
}

/** One `vde <name>` subcommand. `run` resolves with the exit code (0 ok, 1 failure); usage errors throw. */
export interface Command {
  readonly name: string;
  /** One line for `vde --help`. */
  readonly summary: string;
  /** The synopsis, e.g. `vde get <file> <key> [-o <path>]`. */
  readonly usage: string;
  /** Description, options and examples for `vde <name> --help`. */
  readonly help: string;
  readonly options: OptionSpecs;
  /** The command prints data and accepts `--json`. */
  readonly json: boolean;
  run(ctx: CommandContext): Promise<number>;
}

/** Checks the number of positional arguments and returns them. */
export function positionals(ctx: CommandContext, min: number, max: number, names: string): readonly string[] {
  const args = ctx.positionals;
  if (args.length < min) throw new UsageError(`${ctx.name}: missing argument (expected ${names})`, ctx.name);
  if (args.length > max) throw new UsageError(`${ctx.name}: unexpected argument ${JSON.stringify(args[max])}`, ctx.name);
  return args;
}

export function stringOption(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function stringList(ctx: CommandContext, name: string): string[] {
  const v = ctx.values[name];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return typeof v === 'string' ? [v] : [];
}

export function flag(ctx: CommandContext, name: string): boolean {
  return ctx.values[name] === true;
}

/** An integer option in [min, max], or `fallback` when absent. */
export function intOption(ctx: CommandContext, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = stringOption(ctx, name);
  if (v === undefined) return fallback;
  const n = parseSize(v);
  if (n === undefined) {
    throw new UsageError(`${ctx.name}: --${name} must be a whole number (sizes may say 4k, 32m, 1g), got ${JSON.stringify(v)}`, ctx.name);
  }
  if (n < min || n > max) {
    throw new UsageError(`${ctx.name}: --${name} must be from ${min} to ${max}, got ${JSON.stringify(v)} (${n})`, ctx.name);
  }
  return n;
}

const SUFFIX: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };

/** "4096" → 4096, "4k" / "4KiB" → 4096, "32m" → 33554432; undefined if it is not such a number. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  if (!m) return undefined;
  const factor = SUFFIX[(m[2] ?? '').toLowerCase()];
  if (factor === undefined) return undefined;
  const n = Number(m[1]) * factor;
  return Number.isSafeInteger(n) ? n : undefined;
}
