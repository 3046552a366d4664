import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { run } from '../src/index.js';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** Runs `vde <argv>` in-process with captured streams; `stdin` feeds standard input. */
export async function vde(argv: string[], stdin: Uint8Array | string = '', options: { ttyStderr?: boolean } = {}): Promise<Result> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  if (options.ttyStderr) Object.assign(stderr, { isTTY: true });
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await run(argv, { stdout, stderr, stdin: Readable.from([Buffer.from(stdin)]) });
  const stdoutBytes = Buffer.concat(out);
  return { code, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vde-cli-test-'));
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

/** Parses stdout as the one JSON document `--json` promises. */
export function json<T = unknown>(r: Result): T {
  return JSON.parse(r.stdout) as T;
}
