import * as fs from 'node:fs';
import * as path from 'node:path';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs `work`; if Ctrl-C (SIGINT), SIGTERM or SIGHUP arrives meanwhile, first removes what `paths()` names (files or
 * directories, synchronously, best effort: the process is about to end), then ends the process by that same signal,
 * as it would have ended without the handler (exit status 128 + signal number in a shell), unless the process has
 * other listeners for that signal (they decide). For the scratch containers of `vde demo` and `vde bench`, which
 * promise to leave nothing behind, and the temporary files of `get -o` and `export`.
 */
export async function removeOnInterrupt<T>(paths: () => readonly string[], work: () => Promise<T>): Promise<T> {
  const handler = (signal: NodeJS.Signals): void => {
    for (const s of SIGNALS) process.off(s, handler);
    for (const p of paths()) {
      try {
        fs.rmSync(p, { recursive: true, force: true });
      } catch {
        // Best effort: nothing more can be done on the way out.
      }
    }
    // End the process by that signal, as it would have ended without this handler, unless someone else listens for
    // it (a program that runs commands in-process with run()): then ending the process, or not, is theirs to decide,
    // and a second delivery would look like a second Ctrl-C to them.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  for (const s of SIGNALS) process.on(s, handler);
  try {
    return await work();
  } finally {
    for (const s of SIGNALS) process.off(s, handler);
  }
}

/** A container file and, in its directory, its lock files (`<name>.lock`, `<name>.lock.<token>.id`) and reader table. */
export function containerFilesSync(file: string): string[] {
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file);
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    // The directory is gone: only the file itself is left to name.
  }
  const own = names.filter((n) => n === `${base}.lock` || n.startsWith(`${base}.lock.`) || n === `${base}.readers`);
  return [path.resolve(file), ...own.map((n) => path.join(dir, n))];
}
