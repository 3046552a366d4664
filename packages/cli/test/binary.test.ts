import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const bin = path.join(packageDir, 'dist', 'bin.js');

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(args: string[], input?: string): Promise<Exec> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [bin, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input ?? '');
  });
}

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  // The real binary runs from dist/: build it if this checkout has not been built yet.
  if (!fs.existsSync(bin)) {
    const tsc = path.join(packageDir, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc');
    execFileSync(process.execPath, [tsc, '-b', packageDir], { stdio: 'inherit' });
  }
  ({ dir, cleanup } = await tempDir());
}, 120_000);
afterAll(async () => cleanup());

describe('the vde binary', () => {
  it('starts with a node shebang', () => {
    expect(fs.readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('exit codes: 0 ok, 1 error with code and no stack, 2 usage', async () => {
    const help = await exec(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: vde <command>');
    const missing = await exec(['ls', path.join(dir, 'nope.vde')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^vde: no container at .* \(ERR_VDE_NOT_FOUND\)\n$/);
    const usage = await exec(['ls']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("Run 'vde ls --help' for usage.");
  });

  it('pipes stdin to a stored object and back to stdout', async () => {
    const file = path.join(dir, 'b.vde');
    expect((await exec(['create', file])).code).toBe(0);
    const payload = 'line\n'.repeat(10_000);
    const put = await exec(['put', file, 'piped', '-'], payload);
    expect(put.stderr).toBe('');
    expect(put.code).toBe(0);
    const get = await exec(['get', file, 'piped']);
    expect(get.code).toBe(0);
    expect(get.stdout).toBe(payload);
    const ls = await exec(['ls', file, '--json']);
    expect(JSON.parse(ls.stdout)).toMatchObject([{ key: 'piped', size: payload.length }]);
  });

  it('a closed pipe (vde get | head, vde ls | head) ends quietly with exit 0, not a stack trace', async () => {
    const file = path.join(dir, 'pipe.vde');
    expect((await exec(['create', file])).code).toBe(0);
    const big = path.join(dir, 'big.bin');
    fs.writeFileSync(big, Buffer.alloc(5_000_000, 0x61));
    expect((await exec(['put', file, 'big', big])).code).toBe(0);
    const src = path.join(dir, 'many');
    fs.mkdirSync(src);
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(src, `f${i}`), `${i}`);
    expect((await exec(['import', file, src])).code).toBe(0);
    for (const args of [['get', file, 'big'], ['ls', file], ['ls', file, '--json']]) {
      // The shell closes the pipe after one line; PIPESTATUS[0] is vde's own exit code.
      const script = `"${process.execPath}" "${bin}" ${args.map((a) => `"${a}"`).join(' ')} 2>"${dir}/err.txt" | head -c 10 >/dev/null; echo \${PIPESTATUS[0]}`;
      const out = execFileSync('bash', ['-c', script], { encoding: 'utf8' });
      expect({ args: args[0], code: out.trim(), stderr: fs.readFileSync(path.join(dir, 'err.txt'), 'utf8') }).toEqual({ args: args[0], code: '0', stderr: '' });
    }
  }, 60_000);

  it('put from standard input refuses a directory and the container itself (they stored an empty object, or grew it)', async () => {
    const file = path.join(dir, 'stdin.vde');
    expect((await exec(['create', file, '--wal-size', '64k'])).code).toBe(0);
    const putFrom = (source: string, key: string): { status: number | null; stderr: string } => {
      const fd = fs.openSync(source, 'r');
      try {
        const r = spawnSync(process.execPath, [bin, 'put', file, key], { stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8', timeout: 20_000 });
        return { status: r.status, stderr: r.stderr };
      } finally {
        fs.closeSync(fd);
      }
    };
    const fromDir = putFrom(dir, 'from-dir');
    expect(fromDir).toEqual({ status: 1, stderr: 'vde: standard input is a directory, not data to store (EISDIR)\n' });
    const fromSelf = putFrom(file, 'from-self');
    expect(fromSelf.status).toBe(1);
    expect(fromSelf.stderr).toBe(`vde: put: the source is the container ${file} itself: store another file (ERR_VDE_INVALID_ARGUMENT)\n`);
    expect((await exec(['ls', file])).stdout).toBe('');
  });

  /**
   * Starts `vde args`, waits until `ready(stdout)` and `waitFor` exists (the scratch container is being written), sends
   * SIGINT as Ctrl-C does, and resolves with how the process ended.
   */
  function interrupt(args: string[], ready: (stdout: string) => boolean, waitFor: string): Promise<{ signal: string | null; stdout: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
      let stdout = '';
      let sent = false;
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const poll = setInterval(() => {
        if (!sent && ready(stdout) && fs.existsSync(waitFor)) {
          sent = true;
          child.kill('SIGINT');
        }
      }, 20);
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        clearInterval(poll);
        if (!sent) reject(new Error(`vde ${args[0]} ended (code ${code}) before it could be interrupted:\n${stdout}`));
        else resolve({ signal, stdout });
      });
    });
  }

  it("Ctrl-C during the demo's single-stripe run removes that container and its lock files (only the named one stays)", async () => {
    const sub = path.join(dir, 'demo-int');
    fs.mkdirSync(sub);
    const file = path.join(sub, 'd.vde');
    // 20,000 empty objects: the single-stripe run pays one fsync per store, so it is still running when the signal comes.
    const args = ['demo', file, '--objects', '20000', '--min-size', '0', '--max-size', '0'];
    const ended = await interrupt(args, (out) => out.includes('2. 1 stripe'), path.join(sub, 'd.1-stripe.vde'));
    expect(ended.signal).toBe('SIGINT');
    expect(fs.readdirSync(sub).filter((n) => !n.startsWith('d.vde'))).toEqual([]);
    expect(fs.existsSync(file)).toBe(true);
  }, 120_000);

  it('Ctrl-C during get -o or export removes the temporary file being written', async () => {
    const sub = path.join(dir, 'partial-int');
    fs.mkdirSync(sub);
    const file = path.join(sub, 'c.vde');
    const source = path.join(sub, 'big.bin');
    // 64 MiB: written out 1 MiB at a time, its temporary file exists long enough to be seen and interrupted.
    fs.writeFileSync(source, Buffer.alloc(64 << 20, 7));
    expect((await exec(['create', file])).code).toBe(0);
    expect((await exec(['put', file, 'big', source])).code).toBe(0);
    fs.rmSync(source);
    const partials = (): string[] => fs.readdirSync(sub, { recursive: true, encoding: 'utf8' }).filter((n) => n.includes('.vde-partial-'));
    for (const args of [['get', file, 'big', '-o', path.join(sub, 'big.out')], ['export', file, path.join(sub, 'out')]]) {
      const ended = await new Promise<{ signal: string | null }>((resolve, reject) => {
        const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore' });
        let sent = false;
        const poll = setInterval(() => {
          if (!sent && partials().length > 0) {
            sent = true;
            child.kill('SIGINT');
          }
        }, 5);
        child.on('error', reject);
        child.on('exit', (code, signal) => {
          clearInterval(poll);
          if (!sent) reject(new Error(`vde ${args[0]} ended (code ${code}) before its temporary file was seen`));
          else resolve({ signal });
        });
      });
      expect(ended.signal).toBe('SIGINT');
      expect(partials()).toEqual([]);
    }
    expect(fs.existsSync(path.join(sub, 'big.out'))).toBe(false);
    expect(fs.readdirSync(path.join(sub, 'out'))).toEqual([]);
  }, 120_000);

  it('Ctrl-C during vde bench removes its container and lock files', async () => {
    const sub = path.join(dir, 'bench-int');
    fs.mkdirSync(sub);
    const file = path.join(sub, 'b.vde');
    const ended = await interrupt(['bench', file, '--ops', '1000000'], () => true, `${file}.lock`);
    expect(ended.signal).toBe('SIGINT');
    expect(fs.readdirSync(sub)).toEqual([]);
  }, 120_000);
});
