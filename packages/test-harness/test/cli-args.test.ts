import { afterEach, describe, expect, it, vi } from 'vitest';
import { intOptions } from '../src/cli-args.js';

const USAGE = 'tool [--kills 20] [--minutes 0]';
const DEFAULTS = { kills: 20, minutes: 0, writers: 16 };
const RULES = { fractional: ['minutes'], positive: ['writers'] };

class Exit extends Error {
  constructor(readonly status: number | undefined) {
    super(`exit ${String(status)}`);
  }
}

/** Runs intOptions with process.exit and the output streams captured. */
function run(argv: string[]): { status: number | undefined; stdout: string; stderr: string; value?: typeof DEFAULTS } {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process, 'exit').mockImplementation((code?: string | number | null) => {
    throw new Exit(code === null || code === undefined ? undefined : Number(code));
  });
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  try {
    const value = intOptions(argv, DEFAULTS, USAGE, RULES);
    return { status: undefined, stdout, stderr, value };
  } catch (err) {
    if (err instanceof Exit) return { status: err.status, stdout, stderr };
    throw err;
  } finally {
    vi.restoreAllMocks();
  }
}

describe('reliability / soak options', () => {
  afterEach(() => vi.restoreAllMocks());

  it('--help and -h print the usage to stdout and exit 0', () => {
    for (const flag of ['--help', '-h']) {
      const r = run(['--kills', '3', flag]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`usage: ${USAGE}\n`);
      expect(r.stderr).toBe('');
    }
  });

  it('counts must be whole numbers; fractional options take any non-negative number', () => {
    expect(run(['--kills', '3', '--minutes=0.5', '--', '--writers', '2']).value).toEqual({ kills: 3, minutes: 0.5, writers: 2 });
    for (const argv of [['--kills', '1.5'], ['--kills', '-1'], ['--kills', ''], ['--kills'], ['--kills', 'abc'], ['--writers', '0'], ['--minutes', '-0.5'], ['--bogus', '1']]) {
      const r = run(argv);
      expect(r.status, argv.join(' ')).toBe(2);
      expect(r.stderr).toContain(`usage: ${USAGE}`);
    }
    expect(run(['--kills', '1.5']).stderr).toContain('--kills needs a non-negative whole number, got 1.5');
    expect(run(['--writers', '0']).stderr).toContain('--writers needs a positive whole number, got 0');
  });
});

describe('package scripts', () => {
  it('pnpm reliability and pnpm soak build dist first (from a fresh clone there is none, and a stale one misleads)', async () => {
    const { readFile } = await import('node:fs/promises');
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.reliability).toBe('tsc -b && node dist/reliability.js');
    expect(pkg.scripts.soak).toBe('tsc -b && node dist/soak.js');
  });
});
