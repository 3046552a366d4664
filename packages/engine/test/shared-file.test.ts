/*
 * One container file, several opens: a writer recovering beside registered readers, a reader table that cannot be
 * read, and a writable open racing a create. (Real processes are exercised by @vde/test-harness; these are the
 * deterministic cases.)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import { checked, collect, expectCode, tempDir } from './helpers.js';

const value = (b: number): Uint8Array => new Uint8Array(8192).fill(b);

describe('recovery beside a read-only open that has not set its mark', () => {
  it('takes back the blocks the crashed writer had reused after its last checkpoint', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    const crash = join(tmp.dir, 'crash.vde');
    const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 1 << 20 });
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, value(1));
    await vde.checkpoint();
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, value(2)); // the old versions' blocks are deferred
    await vde.checkpoint(); // freed once durable; this checkpoint's meta blob still lists them as deferred
    for (let i = 0; i < 20; i++) await vde.store(`n${i}`, value(3)); // reuses them; only the log says so
    await copyFile(path, crash); // what a crash leaves: every acknowledged store is in the file
    await vde.close();
    // A read-only open registers ("?": it may read anything) before it reads a byte.
    const reader = await FileBlockDevice.open(crash, { readOnly: true });
    try {
      const recovered = await VirtualDiskEngine.open(crash);
      const keys = (await collect(recovered.list())).map((o) => o.key);
      expect(keys.length).toBe(40);
      for (let i = 0; i < 20; i++) expect((await recovered.retrieve(`n${i}`))[0]).toBe(3);
      for (let i = 0; i < 20; i++) expect((await recovered.retrieve(`k${i}`))[0]).toBe(2);
      await checked(recovered);
      await recovered.close();
    } finally {
      await reader.close();
    }
  });
});

describe('a reader table the writer cannot read', () => {
  it('holds freed space instead of failing the checkpoint or the next open', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    await writeFile(`${path}.readers`, 'not a directory');
    const vde = await VirtualDiskEngine.open(path);
    await vde.store('a', value(1));
    await vde.store('a', value(2));
    await vde.checkpoint();
    await vde.store('b', value(3));
    expect((await vde.retrieve('a'))[0]).toBe(2);
    expect((await vde.health()).poisoned).toBe(false);
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(path);
    expect((await again.retrieve('b'))[0]).toBe(3);
    await checked(again);
    await again.close();
  });
});

describe('a writable open of a container another open is still creating', () => {
  it('is ERR_VDE_LOCKED, not ERR_VDE_FORMAT', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    // The creator holds the lock and has written only part of the file so far.
    const creator = await FileBlockDevice.open(path, { create: true });
    await creator.grow(4);
    try {
      await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_LOCKED');
    } finally {
      await creator.close();
    }
    // Once the creator is gone, the same file is what it is: not a container.
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_FORMAT');
  });
});

// ─── A create racing another process's create (real processes) ─────────────────────────────────────────────

/**
 * A child that opens `path` with `blockSize` (create) with the built engine (dist: run `tsc -b` first), stopping
 * itself (SIGSTOP) right before it creates the lock file, i.e. after its look found no file. It prints `STOPPED`,
 * then `OPENED` or `FAILED <code> <message>`.
 */
function stoppedCreator(path: string, blockSize: number) {
  const engineUrl = new URL('../dist/index.js', import.meta.url).href;
  const script = `
    import fsp from 'node:fs/promises';
    import { syncBuiltinESMExports } from 'node:module';
    const link = fsp.link;
    let stopped = false;
    fsp.link = async (from, to) => {
      if (!stopped && String(to).endsWith('.lock')) {
        stopped = true;
        console.log('STOPPED');
        process.kill(process.pid, 'SIGSTOP');
      }
      return link(from, to);
    };
    syncBuiltinESMExports();
    const { VirtualDiskEngine } = await import(${JSON.stringify(engineUrl)});
    try {
      const e = await VirtualDiskEngine.open(${JSON.stringify(path)}, { create: true, blockSize: ${blockSize} });
      console.log('OPENED ' + e.stats().objects);
      await e.close();
    } catch (e) {
      console.log('FAILED ' + e.code + ' ' + e.message);
    }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  const state = (): string | undefined => {
    try {
      const s = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      return s[s.lastIndexOf(')') + 2];
    } catch {
      return undefined;
    }
  };
  return {
    child,
    out: () => out,
    closed,
    /** Until it has printed STOPPED and the kernel shows it stopped. */
    async stopped(): Promise<void> {
      const end = Date.now() + 20_000;
      while (!(out.includes('STOPPED') && state() === 'T')) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`the creator did not stop: ${out}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

describe('a create that loses the race to another process creating the same container', () => {
  it.skipIf(process.platform !== 'linux')('does not delete the container the other process created and filled', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    // A: open(path, { blockSize: 8192 }) saw no file and stops before taking the lock.
    const a = stoppedCreator(path, 8192);
    try {
      await a.stopped();
      // B creates the container meanwhile (default block size), stores and closes.
      const b = await VirtualDiskEngine.open(path);
      await b.store('precious', value(7));
      await b.close();
      // A goes on: it finds a finished container of another block size. It may open it or fail with a typed error,
      // but the container must survive.
      a.child.kill('SIGCONT');
      await a.closed;
      expect(a.out()).toMatch(/^(OPENED 1|FAILED ERR_VDE_\w+ .*)$/m);
      expect(existsSync(path), `the container is gone; the racing open said: ${a.out()}`).toBe(true);
      const again = await VirtualDiskEngine.open(path, { readOnly: true });
      expect((await again.retrieve('precious'))[0]).toBe(7);
      expect(again.stats().objects).toBe(1);
      await again.close();
    } finally {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
      await a.closed;
    }
  });
});
