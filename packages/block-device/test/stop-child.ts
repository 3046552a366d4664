// Child processes that stop themselves (SIGSTOP) at an exact `node:fs/promises` call, for the lock and reader-table
// race tests: the child wraps the builtin module's function and calls `syncBuiltinESMExports` before it imports the
// code under test, so that module's named imports see the wrapper. The test resumes the child with SIGCONT.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Where a child stops: the first (or `nth`) call of `fn` whose argument `arg` matches `pattern`. */
export interface StopPoint {
  /** Printed as `STOP <label>` right before the stop and `CONT <label>` right after it. */
  label: string;
  fn: 'link' | 'rename' | 'writeFile';
  /** Which argument holds the path to match (link and rename: 0 = from, 1 = to). */
  arg: 0 | 1;
  pattern: RegExp;
  /** writeFile only: true = only calls with `{ flag: 'wx' }`, false = only calls without it. */
  wx?: boolean;
  /** Stop at the nth matching call (default 1). */
  nth?: number;
}

/**
 * The first lines of a child's `--input-type=module` script: installs the stop points. Put the code that imports
 * the module under test after it. Also imports `writeFileSync`, `readFileSync` and `unlinkSync` from `node:fs`.
 */
export function stopPreamble(points: StopPoint[]): string {
  const spec = JSON.stringify(points.map((s) => ({ ...s, pattern: s.pattern.source })));
  return `
    import fsp from 'node:fs/promises';
    import { writeFileSync, readFileSync, unlinkSync } from 'node:fs';
    import { syncBuiltinESMExports } from 'node:module';
    for (const s of ${spec}) {
      const orig = fsp[s.fn];
      const re = new RegExp(s.pattern);
      let seen = 0;
      fsp[s.fn] = async function (...args) {
        const wx = typeof args[2] === 'object' && args[2] !== null && args[2].flag === 'wx';
        if (seen >= 0 && re.test(String(args[s.arg])) && (s.wx === undefined || s.wx === wx) && ++seen === (s.nth ?? 1)) {
          seen = -1;
          console.log('STOP ' + s.label);
          process.kill(process.pid, 'SIGSTOP');
          console.log('CONT ' + s.label);
        }
        return orig.apply(this, args);
      };
    }
    syncBuiltinESMExports();
    void writeFileSync; void readFileSync; void unlinkSync;
  `;
}

/**
 * The rest of a child that opens `containerPath` for writing with the module at `moduleUrl`. It prints `ACQUIRED`
 * (then `FLAG` if it created the holder flag file `${containerPath}.holder` exclusively, `FLAG-TAKEN` if another
 * holder has it) or `FAILED <code> <message>`; it holds the lock until its stdin ends, then prints `RELEASED`.
 */
export function holderBody(moduleUrl: string, containerPath: string): string {
  return `
    const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
    const p = ${JSON.stringify(containerPath)};
    const flag = p + '.holder';
    let d;
    try {
      d = await FileBlockDevice.open(p, { create: true });
    } catch (e) {
      console.log('FAILED ' + e.code + ' ' + e.message);
      process.exit(0);
    }
    console.log('ACQUIRED');
    try { writeFileSync(flag, String(process.pid), { flag: 'wx' }); console.log('FLAG'); } catch { console.log('FLAG-TAKEN'); }
    process.stdin.on('data', () => {});
    process.stdin.on('end', async () => {
      try { if (readFileSync(flag, 'utf8') === String(process.pid)) unlinkSync(flag); } catch {}
      await d.close();
      console.log('RELEASED');
      process.exit(0);
    });
  `;
}

/** The state letter of `/proc/<pid>/stat` (`T`: stopped), or undefined if the process is gone. */
function procState(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s[s.lastIndexOf(')') + 2];
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A child process whose stdout the test watches. */
export class WatchedChild {
  readonly child: ChildProcess;
  #out = '';
  #err = '';
  #exited = false;

  constructor(command: string, args: string[]) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.#out += String(d)));
    this.child.stderr!.on('data', (d) => (this.#err += String(d)));
    // 'close': exited and its output read to the end.
    this.child.once('close', () => (this.#exited = true));
  }

  /** A `node --input-type=module -e script` child. */
  static node(script: string): WatchedChild {
    return new WatchedChild(process.execPath, ['--input-type=module', '-e', script]);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get out(): string {
    return this.#out;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Resolves with the first match of `pattern` in stdout; rejects if the child exits first or after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.#out);
      if (m) return m;
      if (this.#exited || Date.now() > end) {
        throw new Error(`child ${this.pid} ${this.#exited ? 'exited' : 'timed out'} before ${String(pattern)}: ${this.#out} ${this.#err}`);
      }
      await sleep(10);
    }
  }

  /** Waits until the child has printed `STOP <label>` and the kernel shows it stopped. */
  async waitStopped(label: string, timeoutMs = 20_000): Promise<void> {
    await this.waitFor(new RegExp(`^STOP ${label}$`, 'm'), timeoutMs);
    const end = Date.now() + timeoutMs;
    while (procState(this.pid) !== 'T') {
      if (Date.now() > end || this.#exited) throw new Error(`child ${this.pid} did not stop at ${label}: ${this.#out} ${this.#err}`);
      await sleep(5);
    }
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  /** Ends the child's stdin (a holder then releases and exits) and waits for its exit. */
  async finish(timeoutMs = 20_000): Promise<void> {
    this.child.stdin!.end();
    await this.waitExit(timeoutMs);
  }

  async waitExit(timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.#exited) {
      if (Date.now() > end) throw new Error(`child ${this.pid} did not exit: ${this.#out} ${this.#err}`);
      await sleep(10);
    }
  }

  /** SIGKILL (also ends a stopped child) and wait for the exit; a no-op once it has exited. */
  async kill(): Promise<void> {
    if (this.#exited) return;
    this.child.kill('SIGKILL');
    await this.waitExit();
  }
}

/** Waits `ms` milliseconds (the tests that must outwait a 5 s grace). */
export { sleep };
