// Races of the writer lock and the reader table between real processes, made deterministic by stopping a child
// (SIGSTOP) at an exact file-system call and resuming it (SIGCONT) once the other side has done its part. Each
// test failed on the code before the fix of these races (see the notes at each test).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileBlockDevice } from '../src/index.js';
import { formatLock, parseLock } from '../src/lock-file.js';
import { tracked, transpileSources } from './helpers.js';
import { holderBody, sleep, stopPreamble, WatchedChild, type StopPoint } from './stop-child.js';

const files = tracked();
const { tempPath } = files;
const children: WatchedChild[] = [];

afterEach(async () => {
  // Children first: a stopped one is killed (SIGKILL ends it), so nothing is left running if an assertion failed.
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await Promise.all(files.devices.splice(0).map((d) => d.close().catch(() => undefined)));
});

afterAll(async () => {
  await files.removeAll();
});

// Stopping at a call and telling that the child is stopped needs POSIX signals and /proc; the identity files the
// fixed code judges by are Linux-only too.
const linux = existsSync('/proc/self/stat') && existsSync('/proc/sys/kernel/random/boot_id') && existsSync('/proc/self/ns/pid');
const canUnshareTime = linux && spawnSync('unshare', ['--time', 'true']).status === 0;

/** More than the 5 s graces (takeover marker, stray `.id`/`.tmp` files, reader temp files) the old code judged by. */
const PAST_GRACE_MS = 5_600;

/** The stale lock's temp file a taker writes with 'wx' after its re-read, right before renaming it over the lock. */
const TAKEOVER_TEMP: StopPoint = { label: 'takeover-temp', fn: 'writeFile', arg: 0, pattern: /\.lock\.[0-9a-f]{32}\.tmp$/, wx: true };

function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid;
}

/** A lock file whose owner has exited (no identity file: judged by pid): any opener takes it over. */
async function plantStaleLock(p: string): Promise<void> {
  await writeFile(`${p}.lock`, formatLock({ pid: deadPid(), token: '0123456789abcdef0123456789abcdef', startedMs: 1_700_000_000_000 }));
}

function ns(kind: 'time'): string {
  try {
    return readlinkSync(`/proc/self/ns/${kind}`);
  } catch {
    return '-';
  }
}

/** Opens for writing in this process; on success also takes the holder flag (as the children do). */
async function openHere(p: string): Promise<{ device?: FileBlockDevice; error?: unknown; flagTaken?: boolean }> {
  let device: FileBlockDevice;
  try {
    device = await FileBlockDevice.open(p, { create: true });
  } catch (error) {
    return { error };
  }
  files.devices.push(device);
  try {
    writeFileSync(`${p}.holder`, String(process.pid), { flag: 'wx' });
    return { device, flagTaken: false };
  } catch {
    return { device, flagTaken: true };
  }
}

describe('lock takeover races between processes', () => {
  let moduleUrl: string;
  beforeAll(async () => {
    const dir = await files.tempDir();
    moduleUrl = await transpileSources(path.join(dir, 'lib'));
  });

  function taker(p: string, points: StopPoint[]): WatchedChild {
    const child = WatchedChild.node(stopPreamble(points) + holderBody(moduleUrl, p));
    children.push(child);
    return child;
  }

  // Old code: the taker's re-read found the lock absent and renamed its lock in anyway, over the lock a plain open
  // had created meanwhile: both held it (this process and the child both acquired; the child's flag was taken).
  it.skipIf(!linux)('a taker that finds the stale lock gone at its re-read does not rename its lock over a new holder', async () => {
    const p = await tempPath();
    await writeFile(p, '');
    await plantStaleLock(p);
    // T1 judged the lock stale and stops right before it creates its takeover marker.
    const t1 = taker(p, [{ label: 'marker', fn: 'link', arg: 1, pattern: /\.lock\.takeover$/ }, TAKEOVER_TEMP]);
    await t1.waitStopped('marker');
    // Meanwhile T2 takes the stale lock over and releases it: the lock file is gone.
    const t2 = await FileBlockDevice.open(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
    await t2.close();
    expect(existsSync(`${p}.lock`)).toBe(false);
    // T1 resumes: it creates its marker and re-reads the lock (absent). The old code went on to write its temp file
    // (where it stops again, before the rename); the fixed code starts over and simply creates the lock.
    t1.resume();
    const [t1State] = await t1.waitFor(/^(STOP takeover-temp|ACQUIRED|FAILED.*)$/m);
    if (t1State === 'STOP takeover-temp') await t1.waitStopped('takeover-temp');
    // T3, a plain open, comes now; then T1 goes on, if it was stopped.
    const t3 = await openHere(p);
    t1.resume();
    const [t1Result] = await t1.waitFor(/^(ACQUIRED|FAILED.*)$/m);
    const t1Acquired = t1Result === 'ACQUIRED';
    if (t1Acquired) await t1.waitFor(/^FLAG(-TAKEN)?$/m);
    // At most one holder: never both T1 and T3, and neither found the holder flag taken.
    expect({ t1: t1Acquired, t3: t3.device !== undefined }).toEqual({ t1: true, t3: false });
    expect(t3.error).toMatchObject({ code: 'ERR_VDE_LOCKED' });
    expect(t1.out).not.toContain('FLAG-TAKEN');
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(t1.pid);
    await t1.finish();
    expect(t1.out).toContain('RELEASED');
    expect((await readdir(path.dirname(p))).filter((n) => n !== 'c.vde')).toEqual([]);
  });

  // Old code: a marker older than 5 s was removed whoever its taker was, so T2 took the lock over, and T1, resumed,
  // renamed its own lock over T2's: both acquired.
  it.skipIf(!linux)('a taker stopped for more than 5 s after creating its takeover marker keeps it: a second taker does not get in', async () => {
    const p = await tempPath();
    await writeFile(p, '');
    await plantStaleLock(p);
    // T1 created the marker and re-read the lock (still stale); it stops before writing the lock it renames in.
    const t1 = taker(p, [TAKEOVER_TEMP]);
    await t1.waitStopped('takeover-temp');
    expect(parseLock(await readFile(`${p}.lock.takeover`, 'utf8'))?.pid).toBe(t1.pid);
    await sleep(PAST_GRACE_MS);
    // T2 meets the old marker of a live taker: it must not remove it, so it gets no further than LockedError.
    const t2 = await openHere(p);
    t1.resume();
    const [t1Result] = await t1.waitFor(/^(ACQUIRED|FAILED.*)$/m);
    const t1Acquired = t1Result === 'ACQUIRED';
    if (t1Acquired) await t1.waitFor(/^FLAG(-TAKEN)?$/m);
    expect({ t1: t1Acquired, t2: t2.device !== undefined }).toEqual({ t1: true, t2: false });
    expect(t2.error).toMatchObject({ code: 'ERR_VDE_LOCKED' });
    expect(t1.out).not.toContain('FLAG-TAKEN');
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(t1.pid);
    await t1.finish();
    expect((await readdir(path.dirname(p))).filter((n) => n !== 'c.vde')).toEqual([]);
  });

  // Old code: the sweep removed any other token's .id file older than 5 s, so the stopped taker's went, and it then
  // held its lock without an identity (judged by the older pid rules, e.g. from another PID namespace).
  it.skipIf(!linux)("an open's sweep keeps the .id file of a live taker stopped for more than 5 s before creating its lock", async () => {
    const p = await tempPath();
    await writeFile(p, '');
    // T1 has written its .id file and stops before the temp file it hard-links to the lock path.
    const t1 = taker(p, [{ label: 'lock-temp', fn: 'writeFile', arg: 0, pattern: /\.lock\.[0-9a-f]{32}\.tmp$/, wx: false }]);
    await t1.waitStopped('lock-temp');
    const ids = readdirSync(path.dirname(p)).filter((n) => /^c\.vde\.lock\.[0-9a-f]{32}\.id$/.test(n));
    expect(ids).toHaveLength(1);
    const idFile = path.join(path.dirname(p), ids[0]!);
    await sleep(PAST_GRACE_MS);
    // D opens (taking the lock, sweeping what it judges left over) and closes.
    const d = await FileBlockDevice.open(p);
    expect(existsSync(idFile)).toBe(true);
    await d.close();
    expect(existsSync(idFile)).toBe(true);
    // T1 goes on and takes the lock, with its identity file beside it.
    t1.resume();
    await t1.waitFor(/^ACQUIRED$/m);
    const token = parseLock(await readFile(`${p}.lock`, 'utf8'))?.token;
    expect(`c.vde.lock.${token}.id`).toBe(path.basename(idFile));
    expect(existsSync(idFile)).toBe(true);
    await t1.finish();
    expect((await readdir(path.dirname(p))).filter((n) => n !== 'c.vde')).toEqual([]);
  });
});

describe('reader table races between processes', () => {
  let moduleUrl: string;
  beforeAll(async () => {
    const dir = await files.tempDir();
    moduleUrl = await transpileSources(path.join(dir, 'lib'));
  });

  /** A read-only open that sets mark `mark`, prints `MARKED` (or `FAILED <code> <message>`) and reads until stdin ends. */
  function readerBody(p: string, mark: number): string {
    return `
      const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      try {
        const d = await FileBlockDevice.open(${JSON.stringify(p)}, { readOnly: true });
        await d.setReaderMark(${mark});
        console.log('MARKED ' + process.pid);
        process.stdin.on('data', () => {});
        process.stdin.on('end', async () => { await d.close(); process.exit(0); });
      } catch (e) {
        console.log('FAILED ' + e.code + ' ' + e.message);
        process.exit(0);
      }
    `;
  }

  // Old code: the writer's table read removed the reader's temp file as left over (older than 5 s); the reader's
  // rename then failed (ENOENT) and so did its open.
  it.skipIf(!linux)('a reader stopped for more than 5 s between writing its mark and the rename still sets it beside a writer', async () => {
    const p = await tempPath();
    const writer = await FileBlockDevice.open(p, { create: true });
    files.devices.push(writer);
    await writer.grow(4);
    // Rename 1 registers the reader ("?"); rename 2 sets its mark: it stops right before that one.
    const reader = WatchedChild.node(
      stopPreamble([{ label: 'mark-rename', fn: 'rename', arg: 0, pattern: /\.readers\/[^/]*\.tmp$/, nth: 2 }]) + readerBody(p, 7),
    );
    children.push(reader);
    await reader.waitStopped('mark-rename');
    const table = `${p}.readers`;
    expect((await readdir(table)).filter((n) => n.endsWith('.tmp'))).toHaveLength(1);
    await sleep(PAST_GRACE_MS);
    // The writer reads the table, as every checkpoint does: the registered reader counts with an unknown mark.
    expect(await writer.readerMarks()).toEqual([null]);
    reader.resume();
    const [result] = await reader.waitFor(/^(MARKED|FAILED).*$/m);
    expect(result).toBe(`MARKED ${reader.pid}`);
    expect(await writer.readerMarks()).toEqual([7]);
    await reader.finish();
    expect(await writer.readerMarks()).toEqual([]);
  });

  // Old code: an owner in another time namespace was "another namespace", taken to be running, so a dead reader's
  // entry stayed for ever (and the writer kept every block it freed).
  it.skipIf(!canUnshareTime)('a dead reader in another time namespace (unshare --time) is judged by its pid and removed', async () => {
    const p = await tempPath();
    const writer = await FileBlockDevice.open(p, { create: true });
    files.devices.push(writer);
    await writer.grow(4);
    const reader = new WatchedChild('unshare', ['--time', process.execPath, '--input-type=module', '-e', readerBody(p, 5)]);
    children.push(reader);
    const [, pidText] = await reader.waitFor(/^MARKED (\d+)$/m);
    const pid = Number(pidText);
    const table = `${p}.readers`;
    const entries = await readdir(table);
    expect(entries).toEqual([expect.stringMatching(new RegExp(`^${pid}-[0-9a-f]{16}$`))]);
    const entry = path.join(table, entries[0]!);
    // Precondition: the entry names another time namespace than ours (line 7), and the reader counts while it runs.
    const timeNs = readFileSync(entry, 'utf8').split('\n')[6];
    expect(timeNs).toMatch(/^time:\[\d+\]$/);
    expect(timeNs).not.toBe(ns('time'));
    expect(await writer.readerMarks()).toEqual([5]);
    // Killed: it cannot remove its entry. (unshare execs node: the killed reader is our child, reaped on its exit.)
    process.kill(pid, 'SIGKILL');
    await reader.waitExit();
    let gone: unknown;
    try {
      process.kill(pid, 0);
    } catch (err) {
      gone = err;
    }
    expect(gone).toMatchObject({ code: 'ESRCH' });
    expect(await writer.readerMarks()).toEqual([]);
    expect(existsSync(entry)).toBe(false);
  });
});
