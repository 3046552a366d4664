import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { link, readdir, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { LockedError, toIoError } from './errors.js';

/*
 * The advisory lock that keeps a container to one writer process.
 *
 * On-disk layout of `${container}.lock` (ASCII, 3 lines, at most 72 bytes):
 *   line 1  pid        decimal, 1..10 digits: the owning process
 *   line 2  token      32 lowercase hex digits (16 random bytes): this lock, unique per open
 *   line 3  startedMs  decimal ms since the epoch when the owning process started (tells a reused pid apart)
 * each line ends with "\n". Invariant: a lock file whose owner is alive (as `liveness` judges it) belongs to that
 * process; only the holder of `token` removes it.
 *
 * The owner's clock-independent identity (`ProcessIdentity`: boot id, start ticks, pid and time namespaces; Linux
 * only) sits in a separate file, `${container}.lock.<token>.id`, named by the lock's token. It is not in the lock file
 * because versions before it parse the lock with an anchored 3-line pattern: a longer lock file would be unparsable
 * to them, and they take over an unparsable lock after 5 s even while its owner runs. Invariant: while a lock file
 * names token T and its owner runs, `${container}.lock.T.id` exists if the owner had an identity (written before
 * the lock is created or renamed into place; removed on release, before the lock, when nothing is written through
 * the lock any more). No identity file (an older version, or not Linux): the lock is judged by pid and `startedMs`
 * as before.
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
/** A takeover marker with unparsable content (an older version's) older than this is left over from a crashed taker. */
const TAKEOVER_GRACE_MS = 5_000;
/** An identity or temp file of another token, with no identity to judge its owner by, older than this is left over. */
const STRAY_GRACE_MS = 5_000;
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
 * let two writers in. Only used for owners without a `ProcessIdentity` (older versions, not Linux).
 */
const FOREIGN_START_SLACK_MS = 30_000;

/**
 * A process's identity that no clock step changes (Linux `/proc`): the same boot id and the same start ticks name
 * the same process. The namespaces tell whether a checker may compare pids and ticks at all: pids are per PID
 * namespace, and `/proc` shows start times shifted by the reader's time namespace.
 */
export interface ProcessIdentity {
  /** `/proc/sys/kernel/random/boot_id`: 36 characters, lowercase hex and dashes; new at every boot. */
  readonly bootId: string;
  /** Field 22 (`starttime`) of `/proc/self/stat`: clock ticks after boot when the process started, decimal. */
  readonly startTicks: string;
  /** `readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`. */
  readonly pidNs: string;
  /** `readlink /proc/self/ns/time`, e.g. `time:[4026531834]`, or `-` where the kernel has no time namespaces. */
  readonly timeNs: string;
}

const IDENTITY_PATTERN = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\n(\d{1,20})\n(pid:\[\d{1,20}\])\n(time:\[\d{1,20}\]|-)\n/;

/** The four identity lines (each ending in "\n"): boot id, start ticks, pid namespace, time namespace. */
export function formatIdentity(id: ProcessIdentity): string {
  return `${id.bootId}\n${id.startTicks}\n${id.pidNs}\n${id.timeNs}\n`;
}

/** Parses the four identity lines at the start of `text` (lines after them are ignored); undefined if they are not there. */
export function parseIdentity(text: string): ProcessIdentity | undefined {
  const m = IDENTITY_PATTERN.exec(text);
  return m ? { bootId: m[1]!, startTicks: m[2]!, pidNs: m[3]!, timeNs: m[4]! } : undefined;
}

/** Field 22 (`starttime`) of a `/proc/<pid>/stat` text, decimal; undefined if absent. */
function startTicksIn(stat: string): string | undefined {
  // Field 2 (the command name) is in parentheses and may hold spaces or parentheses: count from the last ')'.
  const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return ticks !== undefined && /^\d{1,20}$/.test(ticks) ? ticks : undefined;
}

/**
 * This process's identity and whether its `/proc` shows its own PID namespace (field 1 of `/proc/self/stat` is
 * `process.pid`; not so under a `/proc` mounted for another namespace, where `/proc/<pid>` names other processes).
 * Null where `/proc` cannot tell (not Linux, no `/proc`). Read once: none of it changes while the process runs.
 */
let self: { identity: ProcessIdentity; procIsOurs: boolean } | null | undefined;

function selfInfo(): { identity: ProcessIdentity; procIsOurs: boolean } | null {
  if (self !== undefined) return self;
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const startTicks = startTicksIn(stat);
    const pidNs = readlinkSync('/proc/self/ns/pid');
    let timeNs = '-';
    try {
      timeNs = readlinkSync('/proc/self/ns/time');
    } catch {
      // a kernel without time namespaces (before Linux 5.6)
    }
    const identity = { bootId, startTicks: startTicks ?? '', pidNs, timeNs };
    const procIsOurs = Number(stat.slice(0, stat.indexOf(' '))) === process.pid;
    self = startTicks !== undefined && parseIdentity(formatIdentity(identity)) ? { identity, procIsOurs } : null;
  } catch {
    self = null;
  }
  return self;
}

/** This process's `ProcessIdentity`, or undefined where `/proc` cannot tell it (not Linux). */
export function selfIdentity(): ProcessIdentity | undefined {
  return selfInfo()?.identity;
}

/**
 * How a checker judges an owner (of a lock, a takeover marker or a reader entry):
 * - `alive`: it runs (or may run: its pid is alive and nothing shows otherwise);
 * - `dead`: it is gone, or its pid (or boot) now belongs to another process;
 * - `other-namespace`: it ran in another PID (or time) namespace, whose pids this process cannot check;
 * - `unknown`: it recorded an identity, but this process cannot read its own (no usable `/proc`).
 * Only `dead` lets a caller remove or take over what the owner holds.
 */
export type Liveness = 'alive' | 'dead' | 'other-namespace' | 'unknown';

/**
 * Judges `owner`. With the owner's `identity` (written by this version on Linux) the judgement is exact and needs
 * no clock: a different boot id means the owner's boot is over (dead); another namespace, or a `/proc` that is not
 * ours, means we cannot tell (`other-namespace`, `unknown`: not dead); else the pid must be alive and, where `/proc`
 * shows its start ticks, have exactly the owner's. Without an identity (older versions, not Linux): `isAlive`.
 */
export function liveness(owner: Pick<LockOwner, 'pid' | 'startedMs'>, identity: ProcessIdentity | undefined): Liveness {
  if (identity === undefined) return isAlive(owner) ? 'alive' : 'dead';
  const me = selfInfo();
  if (me === null) return 'unknown';
  if (identity.bootId !== me.identity.bootId) return 'dead';
  if (identity.pidNs !== me.identity.pidNs) return 'other-namespace';
  if (!me.procIsOurs) return 'unknown';
  // Another time namespace shares our pids but shifts the start ticks /proc shows: the pid alone decides.
  const sameClock = identity.timeNs === me.identity.timeNs;
  if (owner.pid === process.pid) return !sameClock || identity.startTicks === me.identity.startTicks ? 'alive' : 'dead';
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM' ? 'alive' : 'dead';
  }
  if (!sameClock) return 'alive';
  let ticks: string | undefined;
  try {
    ticks = startTicksIn(readFileSync(`/proc/${owner.pid}/stat`, 'utf8'));
  } catch {
    return 'alive'; // exited meanwhile, or hidden (hidepid): the kill said it ran
  }
  return ticks === undefined || ticks === identity.startTicks ? 'alive' : 'dead';
}

/**
 * True if `owner` may still be running, judged without its identity (the format of older versions). Our own pid
 * counts as alive unless the start time shows pid reuse; so does another live pid, where the system tells its
 * start time (Linux `/proc`).
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
    const ticks = startTicksIn(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return ticks === undefined ? undefined : bootMs + Number(ticks) * 10;
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

/** The file holding the identity of the owner of lock token `token` (see the top of this file). */
function identityPathOf(lockPath: string, token: string): string {
  return `${lockPath}.${token}.id`;
}

/** The identity recorded for lock token `token`, or undefined (none, an older version's lock, unreadable). */
async function identityOf(lockPath: string, token: string): Promise<ProcessIdentity | undefined> {
  return (await identityFileOf(lockPath, token))?.identity;
}

/** An identity file's content: the four identity lines, then the owner's pid (line 5). */
function formatIdentityFile(identity: ProcessIdentity): string {
  return `${formatIdentity(identity)}${process.pid}\n`;
}

/** The identity file of lock token `token` and the pid on its line 5 (undefined: none), or undefined. */
async function identityFileOf(lockPath: string, token: string): Promise<{ identity: ProcessIdentity; pid: number | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(identityPathOf(lockPath, token), 'utf8');
  } catch {
    return undefined;
  }
  const identity = parseIdentity(text);
  if (identity === undefined) return undefined;
  const pid = /^(?:[^\n]*\n){4}(\d{1,10})\n/.exec(text);
  return { identity, pid: pid ? Number(pid[1]) : undefined };
}

/** How `owner` of a lock or takeover marker at `lockPath` is judged, by its identity file where it has one. */
async function judge(lockPath: string, owner: LockOwner): Promise<Liveness> {
  return liveness(owner, await identityOf(lockPath, owner.token));
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

  /** Our identity file: written before our lock (or takeover marker) can exist, removed on failure and release. */
  get #identityPath(): string {
    return identityPathOf(this.lockPath, this.#owner.token);
  }

  async #take(containerPath: string): Promise<void> {
    const identity = selfIdentity();
    if (identity !== undefined) {
      try {
        await writeFile(this.#identityPath, formatIdentityFile(identity), 'utf8');
      } catch (err) {
        await unlink(this.#identityPath).catch(() => undefined);
        throw toIoError(err, `creating ${this.#identityPath}`);
      }
    }
    try {
      await this.#takeWithIdentity(containerPath);
    } catch (err) {
      await unlink(this.#identityPath).catch(() => undefined);
      throw err;
    }
    await this.#sweep();
  }

  async #takeWithIdentity(containerPath: string): Promise<void> {
    const content = formatLock(this.#owner);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#tryCreate(content)) return;
      const seen = await readIfExists(this.lockPath);
      if (!seen) continue; // released between our create and our read: try again
      const holder = parseLock(seen.text);
      const state = holder ? await judge(this.lockPath, holder) : undefined;
      if (holder && state !== 'dead') {
        throw new LockedError(
          state === 'alive'
            ? `${containerPath} is open for writing by process ${holder.pid} (lock file ${this.lockPath}); ` +
                `close it there first, or delete the lock file if that process is not a VDE process`
            : `${containerPath} is open for writing by process ${holder.pid} ` +
                (state === 'other-namespace'
                  ? `of another PID namespace (another container on this host, say; lock file ${this.lockPath}), `
                  : `(lock file ${this.lockPath}), and this process cannot check pids (its /proc is missing or shows another PID namespace), `) +
                `so that process is taken to be running: close it there first, or, if it has ended, delete the lock ` +
                `file and ${identityPathOf(this.lockPath, holder.token)}`,
        );
      }
      if (!holder && Date.now() - seen.mtimeMs < UNPARSABLE_GRACE_MS) {
        // Probably being written right now by its creator ('wx' then write is not atomic): look again shortly.
        await sleep(RETRY_DELAY_MS);
        continue;
      }
      if (await this.#takeOver(seen.text, content)) {
        // The stale owner's identity file goes with its lock.
        if (holder) await unlink(identityPathOf(this.lockPath, holder.token)).catch(() => undefined);
        return;
      }
      await sleep(RETRY_DELAY_MS);
    }
    throw new LockedError(
      `${containerPath}: could not take lock file ${this.lockPath} (it keeps changing or holds unreadable content); ` +
        `if no VDE process uses the container, delete the lock file`,
    );
  }

  /**
   * Once we hold the lock: removes identity files and temp files beside it that a killed process left (their
   * token is not ours), so crashes do not pile them up. A file whose token has an identity file naming a pid goes
   * only if that process is judged dead: a live taker may be stopped or slow for any time, and removing its
   * identity file would leave its lock judged by the older rules. Other files (no identity: not Linux, or an
   * older version) go once older than the grace.
   */
  async #sweep(): Promise<void> {
    const dir = nodePath.dirname(this.lockPath);
    const prefix = `${nodePath.basename(this.lockPath)}.`;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const m = /^(?:takeover\.)?([0-9a-f]{32})\.(?:id|tmp)$/.exec(name.slice(prefix.length));
      if (!m || m[1] === this.#owner.token) continue;
      const file = nodePath.join(dir, name);
      try {
        const owner = await identityFileOf(this.lockPath, m[1]!);
        const stray =
          owner?.pid !== undefined
            ? liveness({ pid: owner.pid, startedMs: 0 }, owner.identity) === 'dead'
            : Date.now() - (await stat(file)).mtimeMs > STRAY_GRACE_MS;
        if (stray) await unlink(file);
      } catch {
        // gone meanwhile, or not ours to remove
      }
    }
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
    // The marker names its taker, so a marker left by a taker that was killed is removed at once. A marker whose
    // taker is alive (or cannot be judged) stays, however old: that taker may be stopped, and it renames its lock in
    // when it resumes. Only unparsable content (an older version's empty marker) goes after the grace.
    if (!(await createComplete(marker, `${marker}.${this.#owner.token}.tmp`, content))) {
      const seen = await readIfExists(marker);
      const taker = seen ? parseLock(seen.text) : undefined;
      if (seen && (taker ? (await judge(this.lockPath, taker)) === 'dead' : Date.now() - seen.mtimeMs > TAKEOVER_GRACE_MS)) {
        await unlink(marker).catch(() => undefined);
      }
      return false;
    }
    try {
      // Gone (released, or taken over and released meanwhile) or changed: someone else moved on, judge again. A
      // rename now could replace a lock that a plain open has just created.
      const now = await readIfExists(this.lockPath);
      if (now?.text !== staleText) return false;
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

  /** Removes the lock file if it still holds our token, and our identity file; idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    try {
      // The identity file first: killed in between, we leave a lock without one (judged by pid, as an older
      // version's), never a stray identity file. Nothing is written through the lock any more.
      await unlink(this.#identityPath).catch(() => undefined);
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
