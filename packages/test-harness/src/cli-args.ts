/**
 * Reads `--name value` (or `--name=value`) options; `defaults` names the accepted ones. Values are whole numbers
 * >= 0, except the names in `fractional` (any finite number >= 0) and `positive` (must be > 0). `--help` / `-h`
 * prints the usage line to stdout and exits 0; a bad argument prints it to stderr and exits 2.
 */
export function intOptions<T extends Record<string, number>>(
  argv: string[],
  defaults: T,
  usage: string,
  rules: { fractional?: readonly string[]; positive?: readonly string[] } = {},
): T {
  const out: Record<string, number> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`usage: ${usage}\n`);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const name = m?.[1];
    if (!m || name === undefined || !(name in defaults)) fail(`unknown argument ${arg}`, usage);
    const text = m[2] ?? argv[++i];
    const value = text === undefined || text.trim() === '' ? NaN : Number(text);
    const fractional = rules.fractional?.includes(name) ?? false;
    const positive = rules.positive?.includes(name) ?? false;
    if (!Number.isFinite(value) || value < 0 || (positive && value === 0) || (!fractional && !Number.isSafeInteger(value))) {
      const kind = `${positive ? 'a positive' : 'a non-negative'} ${fractional ? 'number' : 'whole number'}`;
      fail(`--${name} needs ${kind}, got ${String(text)}`, usage);
    }
    out[name] = value;
  }
  return out as T;
}

function fail(message: string, usage: string): never {
  process.stderr.write(`${message}\nusage: ${usage}\n`);
  process.exit(2);
}

/** A Markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((x, c) => (c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join(' | ')} |`;
  return [line(cells[0]!), `|${widths.map((w, c) => (c === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}
