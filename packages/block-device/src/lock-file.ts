import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { LockedError, toIoError } from './errors.js';

/*
 * The advisory lock that keeps a container to one writer process.
 *
 * On-disk layout of `${container}.lock` (ASCII, 3 lines, at most 72 bytes):
 *   line 1  pid        decimal, 1..10 digits: the owning process
 *   line 2  token      32 lowercase hex digits (16 random bytes): this lock, unique per open
 *   line 3  startedMs  decimal ms since the epoch when the owning process started (tells a reused pid apart)
 * each line ends with "\n". Invariant: a lock file whose pid is alive belongs to that process; only the holder of
 * `token` removes it.
 *
 * The lock file sits beside the container's canonical path (symbolic links resolved), so a container opened
 * through a symbolic link or under another spelling of its path finds the same lock. Within one process the
 * lock is also keyed by the file's identity (device and inode, `bindIdentity`), which catches a hard link. A hard
 * link opened by ANOTHER process is not detected: nothing but the inode names the file in both processes, and
 * Node has no lock on an inode (`fcntl`/`flock`).
 *
 * Awaits split the critical sections below; the in-process set of locked paths is updated synchronously
 * before the first await, so two opens in one process can never both pass it.
 */

/** A lock file with unparsable content younger than this is assumed to be being written by its creator. */
const UNPARSABLE_GRACE_MS = 5_000;
/** A takeover marker older than this is left over from a crashed taker. */
const TAKEOVER_GRACE_MS = 5_000;
const RETRY_DELAY_MS = 20;
const MAX_ATTEMPTS = 50;

const registryKey: unique symbol = Symbol.for('@vde/block-device/locked-paths');
const globalRegistry = globalThis as typeof globalThis & { [registryKey]?: Set<string> };
/**
 * Canonical paths of containers this process (this JS realm, across copies of this module) holds locked, and
 * `inode:<dev>:<ino>` identities of their files.
 */
const heldPaths: Set<string> = (globalRegistry[registryKey] ??= new Set<string>());

/** When this process started, in ms since the epoch (the same for every module copy in the process). */
export const processStartedMs = Math.round(Date.now() - process.uptime() * 1000);

export interface LockOwner {
  readonly pid: number;
  readonly token: string;
  readonly startedMs: number;
}

export function formatLock(owner: LockOwner): string {
  return `${owner.pid}\n${owner.token}\n${owner.startedMs}\n`;
}

export function parseLock(text: string): LockOwner | undefined {
  const m = /^(\d{1,10})\n([0-9a-f]{32})\n(\d{1,16})\n$/.exec(text);
  if (!m) return undefined;
  const pid = Number(m[1]);
  const startedMs = Number(m[3]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || !Number.isSafeInteger(startedMs)) return undefined;
  return { pid, token: m[2]!, startedMs };
}

/**
 * A live process whose start time differs from the lock's `startedMs` by more than this is not the lock's owner (its
 * pid was reused, typically after a reboot). Generous on purpose: the two clocks are read differently (the owner's
 * `Date.now() - uptime` against the kernel's boot time plus start ticks), and declaring a live owner stale would
 * let two writers in.
 */
const FOREIGN_START_SLACK_MS = 30_000;

/**
 * True if `owner` may still be running. Our own pid counts as alive unless the start time shows pid reuse; so does
 * another live pid, where the system tells its start time (Linux `/proc`).
 */
export function isAlive(owner: Pick<LockOwner, 'pid' | 'startedMs'>): boolean {
  if (owner.pid === process.pid) return Math.abs(owner.startedMs - processStartedMs) < 2_000;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM';
  }
  const started = startedMsOf(owner.pid);
  return started === undefined || Math.abs(started - owner.startedMs) <= FOREIGN_START_SLACK_MS;
}

let bootMs: number | null | undefined;

/**
 * When process `pid` started, in ms since the epoch, from Linux's `/proc` (boot time plus the start time in clock
 * ticks, which `/proc` always counts at 100 per second); undefined where that cannot be read.
 */
export function startedMsOf(pid: number): number | undefined {
  try {
    if (bootMs === undefined) {
      const btime = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
      bootMs = btime ? Number(btime[1]) * 1000 : null;
    }
    if (bootMs === null) return undefined;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command name) is in parentheses and may hold spaces or parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]); // field 22, starttime
    return Number.isFinite(ticks) ? bootMs + ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

function isCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function readIfExists(path: string): Promise<{ text: string; mtimeMs: number } | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { text, mtimeMs: st.mtimeMs };
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined;
    throw toIoError(err, `reading lock file ${path}`);
  }
}

/** Writes `content` to `temp`, then links it to `path`: false if `path` exists. The temp file is removed either way. */
async function createComplete(path: string, temp: string, content: string): Promise<boolean> {
  try {
    await writeFile(temp, content, 'utf8');
    try {
      await link(temp, path);
      return true;
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      throw err;
    }
  } catch (err) {
    throw toIoError(err, `creating ${path}`);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** An exclusive advisory lock on one container path, held by this process until `release()`. */
export class FileLock {
  readonly lockPath: string;
  readonly #absPath: string;
  readonly #owner: LockOwner;
  #identity: string | undefined;
  #released = false;

  private constructor(absPath: string) {
    this.#absPath = absPath;
    this.lockPath = `${absPath}.lock`;
    this.#owner = { pid: process.pid, token: randomBytes(16).toString('hex'), startedMs: processStartedMs };
  }

  get token(): string {
    return this.#owner.token;
  }

  /** Takes the lock for `containerPath` or throws `LockedError` naming the holder. */
  static async acquire(containerPath: string): Promise<FileLock> {
    const absPath = await canonicalPath(containerPath);
    if (heldPaths.has(absPath)) {
      throw new LockedError(
        `${containerPath} is already open for writing in this process (pid ${process.pid}); close that device first`,
      );
    }
    heldPaths.add(absPath);
    try {
      const lock = new FileLock(absPath);
      await lock.#take(containerPath);
      return lock;
    } catch (err) {
      heldPaths.delete(absPath);
      throw err;
    }
  }

  /**
   * Records the identity (device, inode) of the file this lock covers, once it is open: throws `LockedError` if
   * this process already holds a lock on the same file under another name (a hard link). Release drops it.
   */
  bindIdentity(containerPath: string, dev: number, ino: number): void {
    const identity = `inode:${dev}:${ino}`;
    if (this.#identity === identity) return;
    if (heldPaths.has(identity)) {
      throw new LockedError(
        `${containerPath} is the same file as a container already open for writing in this process (pid ${process.pid}), ` +
          `under another name (a hard link); close that one first`,
      );
    }
    heldPaths.add(identity);
    this.#identity = identity;
  }

  async #take(containerPath: string): Promise<void> {
    const content = formatLock(this.#owner);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#tryCreate(content)) return;
      const seen = await readIfExists(this.lockPath);
      if (!seen) continue; // released between our create and our read: try again
      const holder = parseLock(seen.text);
      if (holder && isAlive(holder)) {
        throw new LockedError(
          `${containerPath} is open for writing by process ${holder.pid} (lock file ${this.lockPath}); ` +
            `close it there first, or delete the lock file if that process is not a VDE process`,
        );
      }
      if (!holder && Date.now() - seen.mtimeMs < UNPARSABLE_GRACE_MS) {
        // Probably being written right now by its creator ('wx' then write is not atomic): look again shortly.
        await sleep(RETRY_DELAY_MS);
        continue;
      }
      if (await this.#takeOver(seen.text, content)) return;
      await sleep(RETRY_DELAY_MS);
    }
    throw new LockedError(
      `${containerPath}: could not take lock file ${this.lockPath} (it keeps changing or holds unreadable content); ` +
        `if no VDE process uses the container, delete the lock file`,
    );
  }

  /**
   * Creates the lock file with its content in one step: the content goes to a temp file first, which is then
   * hard-linked to the lock path (link fails with EEXIST if the lock exists). A process killed at any moment leaves
   * either no lock file or a complete one, never an empty one that others must wait out.
   */
  async #tryCreate(content: string): Promise<boolean> {
    return createComplete(this.lockPath, `${this.lockPath}.${this.#owner.token}.tmp`, content);
  }

  /**
   * Replaces a stale lock file whose content was `staleText`. Concurrent takers serialize on a takeover marker
   * created with 'wx'; the winner re-checks that the lock still holds the stale content, writes a temp file,
   * renames it over the lock (atomic: readers see old or new, never a partial file) and re-reads to confirm.
   */
  async #takeOver(staleText: string, content: string): Promise<boolean> {
    const marker = `${this.lockPath}.takeover`;
    // The marker names its taker, so a marker left by a taker that was killed is removed at once, not after the grace.
    if (!(await createComplete(marker, `${marker}.${this.#owner.token}.tmp`, content))) {
      const seen = await readIfExists(marker);
      const taker = seen ? parseLock(seen.text) : undefined;
      if (seen && ((taker && !isAlive(taker)) || Date.now() - seen.mtimeMs > TAKEOVER_GRACE_MS)) {
        await unlink(marker).catch(() => undefined);
      }
      return false;
    }
    try {
      const now = await readIfExists(this.lockPath);
      if (now && now.text !== staleText) return false; // someone else changed it: judge again
      const temp = `${this.lockPath}.${this.#owner.token}.tmp`;
      try {
        await writeFile(temp, content, { encoding: 'utf8', flag: 'wx' });
        await rename(temp, this.lockPath);
      } catch (err) {
        await unlink(temp).catch(() => undefined);
        throw toIoError(err, `taking over stale lock file ${this.lockPath}`);
      }
      const after = await readIfExists(this.lockPath);
      return after?.text === content;
    } finally {
      await unlink(marker).catch(() => undefined);
    }
  }

  /** Removes the lock file if it still holds our token; idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    try {
      const seen = await readIfExists(this.lockPath);
      if (seen && parseLock(seen.text)?.token === this.#owner.token) {
        await unlink(this.lockPath).catch((err: unknown) => {
          if (!isCode(err, 'ENOENT')) throw toIoError(err, `removing lock file ${this.lockPath}`);
        });
      }
    } finally {
      heldPaths.delete(this.#absPath);
      if (this.#identity !== undefined) heldPaths.delete(this.#identity);
    }
  }
}

/**
 * The path with every symbolic link resolved: the file's own if it exists, else its directory's plus its name (a
 * container about to be created). Falls back to the absolute path if the directory cannot be resolved either.
 */
export async function canonicalPath(containerPath: string): Promise<string> {
  const absPath = nodePath.resolve(containerPath);
  try {
    return await realpath(absPath);
  } catch {
    try {
      return nodePath.join(await realpath(nodePath.dirname(absPath)), nodePath.basename(absPath));
    } catch {
      return absPath;
    }
  }
}
