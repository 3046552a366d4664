// Liveness of lock owners and readers across PID namespaces and clock steps, and the reader table's garbage.
// Each test failed on the code before its fix (the identity file and entry lines 4-7 did not exist then).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileBlockDevice } from '../src/index.js';
import { formatLock, parseLock } from '../src/lock-file.js';
import { tracked, transpileSources } from './helpers.js';

const files = tracked();
const { tempPath } = files;
const children: ChildProcess[] = [];

const { openTracked } = files;

afterEach(async () => {
  await files.closeAll();
  await Promise.all(
    children.splice(0).map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    }),
  );
});

afterAll(async () => {
  await files.removeAll();
});

const linux = existsSync('/proc/self/stat') && existsSync('/proc/sys/kernel/random/boot_id') && existsSync('/proc/self/ns/pid');

/** Read here, by hand, so the test does not depend on the code under test. */
function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}
function startTicks(pid: number | 'self'): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!;
}
function ns(kind: 'pid' | 'time'): string {
  try {
    return readlinkSync(`/proc/self/ns/${kind}`);
  } catch {
    return '-';
  }
}
function identityLines(o: { boot?: string; ticks: string; pidNs?: string; timeNs?: string }): string {
  return `${o.boot ?? bootId()}\n${o.ticks}\n${o.pidNs ?? ns('pid')}\n${o.timeNs ?? ns('time')}\n`;
}

/** The lock file pattern of the versions before the identity file: a new lock file must still match it. */
const OLD_LOCK_PATTERN = /^(\d{1,10})\n([0-9a-f]{32})\n(\d{1,16})\n$/;

function sleeper(): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(child);
  return child;
}

function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid;
}

/** Spawns `command`, resolves with the child once its stdout has printed `marker` (rejects if it exits first). */
async function startChild(command: string, args: string[], marker: string): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += String(d);
      if (out.includes(marker)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${String(code)}) before "${marker}": ${out} ${err}`)));
  });
  return { child, out: () => out };
}

async function runChild(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  await new Promise((r) => child.once('exit', r));
  return out;
}

const canUnshare =
  linux && process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

describe('lock and reader liveness', () => {
  let moduleUrl: string;
  beforeAll(async () => {
    const dir = await files.tempDir();
    moduleUrl = await transpileSources(path.join(dir, 'lib'));
  });

  it.skipIf(!canUnshare)('a writer or reader in another PID namespace (unshare --pid) is taken to be running', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true });
    await dev.grow(1);
    const unshare = ['--pid', '--fork', '--mount-proc', process.execPath, '--input-type=module', '-e'];
    // 1. We hold the lock; a process in a new PID namespace cannot see our pid (ESRCH there), yet must not take it.
    const tryOpen = `
      const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      try { const d = await FileBlockDevice.open(${JSON.stringify(p)}); console.log('OPENED'); await d.close(); }
      catch (e) { console.log(e.code + ' ' + e.message); }`;
    const first = await runChild('unshare', [...unshare, tryOpen]);
    expect(first).toContain('ERR_VDE_LOCKED');
    expect(first).toContain('another PID namespace');
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
    // 2. A reader in a new PID namespace (its pid there is 1, someone else here) stays counted by our writer.
    const holdReader = `
      const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      const d = await FileBlockDevice.open(${JSON.stringify(p)}, { readOnly: true });
      await d.setReaderMark(42);
      console.log('READING');
      process.stdin.on('data', () => {}); process.stdin.on('end', async () => { await d.close(); process.exit(0); });`;
    const reader = await startChild('unshare', [...unshare, holdReader], 'READING');
    expect(await dev.readerMarks()).toEqual([42]);
    reader.child.stdin!.end();
    await new Promise((r) => reader.child.once('exit', r));
    expect(await dev.readerMarks()).toEqual([]);
    await dev.close();
    // 3. A writer in a new PID namespace holds the lock; we (whose pid 1 is someone else) must not take it.
    const holdLock = `
      const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      const d = await FileBlockDevice.open(${JSON.stringify(p)});
      console.log('HOLDING');
      process.stdin.on('data', () => {}); process.stdin.on('end', async () => { await d.close(); process.exit(0); });`;
    const writer = await startChild('unshare', [...unshare, holdLock], 'HOLDING');
    const err = await FileBlockDevice.open(p).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_VDE_LOCKED' });
    expect((err as Error).message).toContain('another PID namespace');
    expect((err as Error).message).toContain('delete the lock file');
    writer.child.stdin!.end();
    await new Promise((r) => writer.child.once('exit', r));
    await expect(stat(`${p}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(path.dirname(p))).filter((n) => n !== 'c.vde')).toEqual([]);
  });

  it.skipIf(!linux)('a wall-clock step of 60 s after the writer started does not let a second writer in', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(4096));
    // The writer computes its start time while the clock is 60 s behind; then the clock is stepped forward.
    const script = `
      const realNow = Date.now; Date.now = () => realNow() - 60000;
      const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      Date.now = realNow;
      const d = await FileBlockDevice.open(${JSON.stringify(p)});
      console.log('HOLDING');
      setInterval(() => {}, 1000);`;
    const { child } = await startChild(process.execPath, ['--input-type=module', '-e', script], 'HOLDING');
    const err = await FileBlockDevice.open(p).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_VDE_LOCKED' });
    expect((err as Error).message).toContain(String(child.pid));
    // The lock file keeps the 3-line layout older versions parse; the identity sits in the token's .id file.
    const text = await readFile(`${p}.lock`, 'utf8');
    expect(OLD_LOCK_PATTERN.test(text)).toBe(true);
    const token = parseLock(text)!.token;
    expect(await readFile(`${p}.lock.${token}.id`, 'utf8')).toBe(`${identityLines({ ticks: startTicks(child.pid!) })}${child.pid}\n`);
  });

  it.skipIf(!linux)('an identity file decides exactly: same boot and ticks alive; other ticks or boot stale; other namespace alive', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(4096));
    const child = sleeper();
    await new Promise((r) => child.once('spawn', r));
    const pid = child.pid!;
    const ticks = startTicks(pid);
    let planted: string | undefined;
    const plant = async (identity: string, owner = pid): Promise<string> => {
      // The previous planted owner "closes" (removes its identity file) if its lock was not taken over.
      if (planted !== undefined) await unlink(`${p}.lock.${planted}.id`).catch(() => undefined);
      const token = (planted = randomBytes(16).toString('hex'));
      // startedMs a day off: the old rule alone would call this live owner stale.
      await writeFile(`${p}.lock`, formatLock({ pid: owner, token, startedMs: Date.now() - 86_400_000 }));
      await writeFile(`${p}.lock.${token}.id`, identity);
      return token;
    };
    // Same boot, same start ticks: the owner, whatever the clocks say.
    await plant(identityLines({ ticks }));
    await expect(FileBlockDevice.open(p)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
    // Same boot, other start ticks: the pid was reused; the lock is taken over and its identity file removed.
    let token = await plant(identityLines({ ticks: String(BigInt(ticks) + 1n) }));
    let dev = await openTracked(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
    await expect(stat(`${p}.lock.${token}.id`)).rejects.toMatchObject({ code: 'ENOENT' });
    await dev.close();
    // Another boot: that owner is gone, even though the pid is alive now.
    token = await plant(identityLines({ boot: '00000000-0000-4000-8000-000000000000', ticks }));
    dev = await openTracked(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
    await dev.close();
    // Another PID namespace: its pid means nothing here (this one is dead here), so it is taken to be running.
    const dead = deadPid();
    token = await plant(identityLines({ ticks: '12345', pidNs: 'pid:[1]' }), dead);
    const err = await FileBlockDevice.open(p).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_VDE_LOCKED' });
    expect((err as Error).message).toContain('another PID namespace');
    expect((err as Error).message).toContain(`${p}.lock.${token}.id`);
    // Deleted by hand, as the message says: the open goes through; close leaves nothing behind.
    await unlink(`${p}.lock`);
    await unlink(`${p}.lock.${token}.id`);
    dev = await openTracked(p);
    const mine = parseLock(await readFile(`${p}.lock`, 'utf8'))!;
    expect(existsSync(`${p}.lock.${mine.token}.id`)).toBe(true);
    await dev.close();
    expect((await readdir(path.dirname(p))).filter((n) => n !== 'c.vde')).toEqual([]);
  });

  it.skipIf(!linux)('identity and temp files left by killed processes are swept once old', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(0));
    const old = new Date(Date.now() - 60_000);
    const stray = [`${p}.lock.${'d'.repeat(32)}.id`, `${p}.lock.${'e'.repeat(32)}.tmp`, `${p}.lock.takeover.${'f'.repeat(32)}.tmp`];
    for (const f of stray) {
      await writeFile(f, 'x');
      await utimes(f, old, old);
    }
    const young = `${p}.lock.${'9'.repeat(32)}.id`;
    await writeFile(young, 'x');
    const other = `${p}.lock.notes`;
    await writeFile(other, 'x');
    await utimes(other, old, old);
    const dev = await openTracked(p);
    for (const f of stray) expect(existsSync(f)).toBe(false);
    expect(existsSync(young)).toBe(true); // may be a taker's that is still running
    expect(existsSync(other)).toBe(true); // not ours
    await dev.close();
  });

  it.skipIf(!linux)('reader entries: lines 4-7 decide as for locks; an old 3-line entry is judged as before', async () => {
    const p = await tempPath();
    const writer = await openTracked(p, { create: true });
    const table = `${p}.readers`;
    await mkdir(table);
    const dead = deadPid();
    const child = sleeper();
    await new Promise((r) => child.once('spawn', r));
    const ticks = startTicks(child.pid!);
    // A reader in another PID namespace: its pid is dead here, yet it counts.
    await writeFile(path.join(table, `${dead}-0000000000000001`), `${dead}\n1\n5\n${identityLines({ ticks: '7', pidNs: 'pid:[1]' })}`);
    // A live reader whose clock was stepped (startedMs far off): the identity says it is the same process.
    await writeFile(path.join(table, `${child.pid!}-0000000000000002`), `${child.pid!}\n1\n6\n${identityLines({ ticks })}`);
    // The pid reused by another process (other ticks), and a reader of another boot: stale, removed.
    await writeFile(path.join(table, `${child.pid!}-0000000000000003`), `${child.pid!}\n1\n7\n${identityLines({ ticks: '1' })}`);
    await writeFile(
      path.join(table, `${child.pid!}-0000000000000004`),
      `${child.pid!}\n1\n8\n${identityLines({ boot: '00000000-0000-4000-8000-000000000000', ticks })}`,
    );
    // The format of older versions: a dead pid is stale.
    await writeFile(path.join(table, `${dead}-0000000000000005`), `${dead}\n1\n9\n`);
    expect((await writer.readerMarks()).sort()).toEqual([5, 6]);
    expect((await readdir(table)).sort()).toEqual([`${child.pid!}-0000000000000002`, `${dead}-0000000000000001`].sort());
    // Our own read-only open writes lines 4-7 (and the writer counts it).
    const reader = await openTracked(p, { readOnly: true });
    await reader.setReaderMark(3);
    const mine = (await readdir(table)).find((n) => n.startsWith(`${process.pid}-`))!;
    expect(await readFile(path.join(table, mine), 'utf8')).toMatch(
      new RegExp(`^${process.pid}\\n\\d+\\n3\\n${identityLines({ ticks: startTicks('self') }).replace(/[[\]]/g, '\\$&')}$`),
    );
    expect((await writer.readerMarks()).sort()).toEqual([3, 5, 6]);
  });
});

describe('reader table garbage', () => {
  it('an unparsable entry is kept (keep everything) while young, then ignored and removed; so is an old temp file', async () => {
    const p = await tempPath();
    const writer = await openTracked(p, { create: true });
    const table = `${p}.readers`;
    await mkdir(table);
    const old = new Date(Date.now() - 60_000);
    // A 0-byte entry (what a power loss can leave: entries are not fsynced) and a stray file.
    const empty = path.join(table, '12345-0123456789abcdef');
    const stray = path.join(table, 'notes.txt');
    const cut = path.join(table, '12346-0123456789abcdef');
    await writeFile(empty, '');
    await writeFile(stray, 'hello\n');
    await writeFile(cut, '12346\n17');
    expect(await writer.readerMarks()).toEqual([null, null, null]); // young: maybe being written, keep everything
    for (const f of [empty, stray, cut]) await utimes(f, old, old);
    const oldTemp = path.join(table, '12347-0123456789abcdef.tmp');
    const youngTemp = path.join(table, '12348-0123456789abcdef.tmp');
    await writeFile(oldTemp, '12347\n');
    await utimes(oldTemp, old, old);
    await writeFile(youngTemp, '12348\n');
    expect(await writer.readerMarks()).toEqual([]);
    expect(await readdir(table)).toEqual([path.basename(youngTemp)]);
    // Once the young temp file is old too, the table goes with it.
    await utimes(youngTemp, old, old);
    expect(await writer.readerMarks()).toEqual([]);
    await expect(stat(table)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('read-only opens without write access to the directory', () => {
  it.skipIf(!(linux && process.getuid?.() === 0))(
    'as another user: ERR_VDE_IO (EACCES) saying why the directory must be writable',
    async () => {
      const p = await tempPath();
      const dev = await FileBlockDevice.open(p, { create: true });
      await dev.grow(1);
      await dev.close();
      await chmod(path.dirname(p), 0o755);
      await chmod(p, 0o644);
      const dir = await files.tempDir();
      const lib = path.join(dir, 'lib');
      const url = await transpileSources(lib);
      await chmod(dir, 0o755);
      const script = `
        process.setgid(65534); process.setuid(65534);
        const { FileBlockDevice } = await import(${JSON.stringify(url)});
        try { const d = await FileBlockDevice.open(${JSON.stringify(p)}, { readOnly: true }); console.log('OPENED'); await d.close(); }
        catch (e) { console.log(e.code + ' ' + e.errno + ' ' + e.message); }`;
      const out = await runChild(process.execPath, ['--input-type=module', '-e', script]);
      expect(out).toContain('ERR_VDE_IO EACCES');
      expect(out).toContain('write access');
      expect(out).toContain(`${p}.readers`);
    },
  );
});
