import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { IoError, toIoError } from './errors.js';
import { canonicalPath, formatIdentity, liveness, parseIdentity, processStartedMs, selfIdentity, type ProcessIdentity } from './lock-file.js';

/*
 * The reader table of a container: read-only opens (which take no lock) register here, so that the container's
 * writer, in this process or another, can keep the blocks they may read (it cannot see them otherwise).
 *
 * Layout: a directory `${container}.readers` beside the container's canonical path, one file per read-only open,
 * named `${pid}-${token}` (token: 16 random hex digits). Content (ASCII, 3 or 7 lines, each ending in "\n"):
 *   line 1  pid        decimal: the reading process
 *   line 2  startedMs  decimal ms since the epoch when that process started (tells a reused pid apart)
 *   line 3  mark       a decimal number the reader sets (VDE: the checkpoint generation it reads), or "?" while
 *                      it does not know it yet (a writer must then keep everything)
 *   lines 4-7          the reader's `ProcessIdentity` (see lock-file.ts), where it has one (Linux); a parser ignores
 *                      lines after the first 3 it does not know, so later versions may add lines
 * A file is replaced atomically (temp file + rename), so it is complete unless a power loss cut it (it is not
 * fsynced; every reader is gone then). A file whose process is gone is stale: `readerMarks` removes it; so is a file
 * it cannot parse that is older than `GARBAGE_GRACE_MS` (by mtime), and a leftover `*.tmp` as old. Versions before
 * lines 4-7 cannot parse a 7-line entry: they keep everything while it is there, which is safe.
 *
 * Invariant the protocol gives a writer: a reader registers BEFORE it reads anything of the container, so a
 * writer that lists the table after making a new checkpoint durable sees every reader that may have read an
 * older one.
 */

/**
 * This process's read-only opens by file identity (`<dev>:<ino>`): a writer in this process also finds those that
 * opened the file under another name (a hard link), whose table sits beside that name. Shared by every copy of
 * this module in the realm.
 */
const byIdentityKey: unique symbol = Symbol.for('@vde/block-device/readers-by-identity');
const globalRegistry = globalThis as typeof globalThis & { [byIdentityKey]?: Map<string, Set<ReaderEntry>> };
const byIdentity: Map<string, Set<ReaderEntry>> = (globalRegistry[byIdentityKey] ??= new Map());

/**
 * An entry (or `*.tmp` file) in the table that `readerMarks` cannot parse is ignored and removed once it is older than
 * this: entries are written complete (temp + rename), so only a cut write (power loss) or a stray file is unparsable.
 */
const GARBAGE_GRACE_MS = 5_000;
/** How often a reader makes the table again when it was removed between its `mkdir` and its write (see `create`). */
const CREATE_ATTEMPTS = 20;

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

export function readersDirOf(canonical: string): string {
  return `${canonical}.readers`;
}

/** One read-only open's entry in the reader table. */
export class ReaderEntry {
  readonly #file: string;
  readonly #dir: string;
  #released = false;
  #identity: string | undefined;
  /** The mark last set (null: not yet). */
  mark: number | null = null;

  private constructor(dir: string, file: string) {
    this.#dir = dir;
    this.#file = file;
  }

  /**
   * Registers a reader of `containerPath` with an unknown mark ("?"). Undefined, registering nothing, where the
   * container's file system is read-only (EROFS): no writer can write the container through it. No write access to
   * the directory (EACCES, EPERM) is an `IoError` that says so: an unregistered reader could read blocks that a
   * writer (of another user) reuses.
   */
  static async create(containerPath: string): Promise<ReaderEntry | undefined> {
    const dir = readersDirOf(await canonicalPath(containerPath));
    const entry = new ReaderEntry(dir, nodePath.join(dir, `${process.pid}-${randomBytes(8).toString('hex')}`));
    for (let attempt = 1; ; attempt++) {
      try {
        // Not `recursive`: on a read-only file system Node's recursive mkdir of a missing directory reports ENOENT
        // (it stats the path after the EROFS), not EROFS. The container's directory exists, so one level is enough.
        await mkdir(dir).catch((err: unknown) => {
          if ((err as { code?: unknown } | null)?.code !== 'EEXIST') throw err;
        });
        await entry.#write('?');
        return entry;
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        // Another reader's release (or a writer removing a table of dead readers) removed the table, empty, between
        // our mkdir and our write: make it again. Once our temp file is in it, nobody can remove it (rmdir fails).
        if (code === 'ENOENT' && attempt < CREATE_ATTEMPTS) continue;
        if (code === 'EROFS') return undefined;
        if (code === 'EACCES' || code === 'EPERM') {
          throw new IoError(
            `cannot open ${containerPath} read-only: a read-only open registers in the reader table ${dir} (so that ` +
              `a writer keeps the blocks it reads), which needs write access to the container's directory, and this ` +
              `process has none (${String(code)}). Give it write access to that directory, or read a copy of the container`,
            { cause: err },
          );
        }
        throw toIoError(err, `registering in the reader table ${dir}`);
      }
    }
  }

  /** Sets this reader's mark (a writer keeps what a reader with this mark may read). */
  async setMark(mark: number): Promise<void> {
    if (this.#released) return;
    try {
      await this.#write(String(mark));
    } catch (err) {
      throw toIoError(err, `writing reader entry ${this.#file}`);
    }
    this.mark = mark;
  }

  get file(): string {
    return this.#file;
  }

  /** Records the identity of the file this reader opened (see byIdentity). */
  bindIdentity(dev: number, ino: number): void {
    this.#identity = `${dev}:${ino}`;
    let set = byIdentity.get(this.#identity);
    if (!set) byIdentity.set(this.#identity, (set = new Set()));
    set.add(this);
  }

  /** Removes the entry (and the table's directory if it is empty); idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#identity !== undefined) {
      const set = byIdentity.get(this.#identity);
      set?.delete(this);
      if (set?.size === 0) byIdentity.delete(this.#identity);
    }
    await unlink(this.#file).catch(() => undefined);
    await rmdir(this.#dir).catch(() => undefined); // ENOTEMPTY: other readers are registered
  }

  /** Replaces the entry's file atomically; throws Node's error as it is. */
  async #write(mark: string): Promise<void> {
    const temp = `${this.#file}.tmp`;
    const identity = selfIdentity();
    const content = `${process.pid}\n${processStartedMs}\n${mark}\n${identity === undefined ? '' : formatIdentity(identity)}`;
    for (let attempt = 1; ; attempt++) {
      try {
        await writeFile(temp, content, 'utf8');
        await rename(temp, this.#file);
        return;
      } catch (err) {
        await unlink(temp).catch(() => undefined);
        // A writer removed our temp file as left over (we were stopped past its grace) before the rename: write it
        // again. (ENOENT for the table itself is the caller's case; it makes the table again.)
        const code = (err as { code?: unknown } | null)?.code;
        if (code === 'ENOENT' && attempt < CREATE_ATTEMPTS && (await exists(this.#dir))) continue;
        throw err;
      }
    }
  }
}

export interface ParsedReaderEntry {
  readonly pid: number;
  readonly startedMs: number;
  /** null: "?", not set yet. */
  readonly mark: number | null;
  /** Lines 4-7, where the reader wrote them. */
  readonly identity: ProcessIdentity | undefined;
}

/** Parses a reader entry's content (see the top of this file); undefined if its first 3 lines are not valid. */
export function parseReaderEntry(text: string): ParsedReaderEntry | undefined {
  const m = /^(\d{1,10})\n(\d{1,16})\n(\?|\d{1,16})\n/.exec(text);
  if (!m) return undefined;
  const rest = text.slice(m[0].length);
  if (rest !== '' && !rest.endsWith('\n')) return undefined; // cut short
  const pid = Number(m[1]);
  const startedMs = Number(m[2]);
  if (pid <= 0 || !Number.isSafeInteger(startedMs)) return undefined;
  return { pid, startedMs, mark: m[3] === '?' ? null : Number(m[3]), identity: parseIdentity(rest) };
}

/** True if `file` was last modified more than `GARBAGE_GRACE_MS` ago (false if it cannot be told). */
async function isOld(file: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs > GARBAGE_GRACE_MS;
  } catch {
    return false;
  }
}

/**
 * The marks of the live readers of `containerPath` (null: a reader that has not set its mark yet). Entries of
 * processes that are gone are removed, and so are unparsable entries and temp files older than
 * `GARBAGE_GRACE_MS`. An empty array when no reader is registered.
 */
export async function readerMarks(containerPath: string, identity?: { dev: number; ino: number }): Promise<(number | null)[]> {
  const dir = readersDirOf(await canonicalPath(containerPath));
  const marks: (number | null)[] = [];
  // This process's readers of the same file under another name (a hard link).
  const local = identity === undefined ? undefined : byIdentity.get(`${identity.dev}:${identity.ino}`);
  for (const entry of local ?? []) if (nodePath.dirname(entry.file) !== dir) marks.push(entry.mark);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return marks;
    throw toIoError(err, `reading the reader table ${dir}`);
  }
  for (const name of names) {
    const file = nodePath.join(dir, name);
    if (name.endsWith('.tmp')) {
      // Being written (a reader renames it at once, unless it is stopped), or left by a process killed in between:
      // removed once old, unless it names a reader that is not dead.
      if (await isOld(file)) {
        const owner = parseReaderEntry(await readFile(file, 'utf8').catch(() => ''));
        if (!owner || liveness(owner, owner.identity) === 'dead') await unlink(file).catch(() => undefined);
      }
      continue;
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue; // released meanwhile
    }
    const entry = parseReaderEntry(text);
    if (!entry) {
      // Cut by a power loss (no reader survives one) or not an entry at all: garbage once old. A young one may be
      // a reader of a format we do not know: keep everything.
      if (await isOld(file)) await unlink(file).catch(() => undefined);
      else marks.push(null);
      continue;
    }
    if (liveness(entry, entry.identity) === 'dead') {
      await unlink(file).catch(() => undefined);
      continue;
    }
    marks.push(entry.mark);
  }
  // The table of readers that all died: removed with its last stale entry (rmdir fails while any entry is left).
  if (names.length > 0 && marks.length === 0) await rmdir(dir).catch(() => undefined);
  return marks;
}
