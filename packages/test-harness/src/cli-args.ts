/** Reads `--name value` integer options; `defaults` names the accepted ones. Exits with a usage line on a bad value. */
export function intOptions<T extends Record<string, number>>(argv: string[], defaults: T, usage: string): T {
  const out: Record<string, number> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const name = m?.[1];
    if (!m || name === undefined || !(name in defaults)) fail(`unknown argument ${arg}`, usage);
    const text = m[2] ?? argv[++i];
    const value = Number(text);
    if (text === undefined || !Number.isFinite(value) || value < 0) fail(`--${name} needs a non-negative number, got ${String(text)}`, usage);
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
