import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { link, mkdir, readFile, readdir, rename, stat, symlink, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { durableHandleOf, fileHandleOf } from '../src/file-block-device.js';
import { ClosedError, FileBlockDevice, FullError, IoError, PoisonedError, ReadOnlyError } from '../src/index.js';
import { formatLock, parseLock, startedMsOf } from '../src/lock-file.js';
import { blockDeviceContract } from './contract.js';
import { sameBytes, tracked, transpileSources } from './helpers.js';

const files = tracked();
const { tempPath } = files;

const { openTracked } = files;

afterEach(async () => {
  await files.closeAll();
});

afterAll(async () => {
  await files.removeAll();
});

blockDeviceContract('FileBlockDevice', {
  async make({ blockSize, blockCount, readOnly }) {
    const p = await tempPath();
    if (readOnly) {
      await writeFile(p, new Uint8Array(blockCount * blockSize));
      return openTracked(p, { blockSize, readOnly: true });
    }
    const dev = await openTracked(p, { blockSize, create: true });
    await dev.grow(blockCount);
    return dev;
  },
});

function block(size: number, fill: number): Uint8Array {
  return new Uint8Array(size).fill(fill);
}

describe('FileBlockDevice.open', () => {
  it('creates a missing file only with create, and validates options', async () => {
    const p = await tempPath();
    await expect(FileBlockDevice.open(p)).rejects.toMatchObject({ code: 'ERR_VDE_NOT_FOUND' });
    await expect(FileBlockDevice.open(p, { readOnly: true })).rejects.toMatchObject({ code: 'ERR_VDE_NOT_FOUND' });
    // A failed open leaves no lock file behind.
    await expect(stat(`${p}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    // A create in a directory that does not exist names the directory (it failed creating the lock's identity file).
    const inMissing = `${p}.missing-dir/c.vde`;
    await expect(FileBlockDevice.open(inMissing, { create: true })).rejects.toMatchObject({ code: 'ERR_VDE_NOT_FOUND' });
    await expect(FileBlockDevice.open(inMissing, { create: true })).rejects.toThrow(`the directory ${p}.missing-dir does not exist`);
    for (const blockSize of [0, 100, 256, 1000, 131_072, 4096.5]) {
      await expect(FileBlockDevice.open(p, { create: true, blockSize })).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    }
    await expect(FileBlockDevice.open(p, { create: true, readOnly: true })).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    await expect(FileBlockDevice.open(p, null as never)).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    const dev = await openTracked(p, { create: true });
    expect(dev.path).toBe(p);
    expect(dev.blockSize).toBe(4096);
    expect(dev.blockCount).toBe(0);
    expect(dev.fileSizeBytes).toBe(0);
    expect((await stat(p)).size).toBe(0);
  });

  it('a path that is not a regular file is ERR_VDE_INVALID_ARGUMENT, before any lock or reader entry', async () => {
    const dir = await tempPath('a-directory');
    await mkdir(dir);
    for (const options of [{}, { readOnly: true }, { create: true }]) {
      // A read-only open of a directory used to succeed (blockCount from the directory's size) and register a reader.
      await expect(FileBlockDevice.open(dir, options), JSON.stringify(options)).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    }
    expect(existsSync(`${dir}.readers`)).toBe(false);
    expect(existsSync(`${dir}.lock`)).toBe(false);
    if (process.platform === 'win32') return;
    // A FIFO: a read-only open used to block in open(2) until a writer came, for ever (a thread of libuv's pool
    // with it, so even process.exit() waited); a writable one failed later, in grow (EINVAL from ftruncate).
    const fifo = await tempPath('a-fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    for (const options of [{}, { readOnly: true }, { create: true }]) {
      const opening = FileBlockDevice.open(fifo, options).then(
        (dev) => dev,
        (err: unknown) => err,
      );
      const outcome = await Promise.race([opening, new Promise((r) => setTimeout(() => r('still opening after 2 s'), 2000))]);
      if (outcome === 'still opening after 2 s') {
        // Free the blocked open (a writer arrives) so that the test run can end, then fail.
        const { openSync, closeSync } = await import('node:fs');
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
        const dev = await opening;
        if (dev instanceof FileBlockDevice) await dev.close();
      }
      if (outcome instanceof FileBlockDevice) await outcome.close();
      expect(outcome, JSON.stringify(options)).toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    }
    expect(existsSync(`${fifo}.readers`)).toBe(false);
    expect(existsSync(`${fifo}.lock`)).toBe(false);
  });

  it('blockCount is floor(file size / blockSize); a partial tail block is ignored', async () => {
    const p = await tempPath();
    await writeFile(p, block(512 * 3 + 100, 9));
    const dev = await openTracked(p, { blockSize: 512 });
    expect(dev.blockCount).toBe(3);
    expect(dev.fileSizeBytes).toBe(512 * 3 + 100);
    expect(sameBytes(await dev.read(2, 1), block(512, 9))).toEqual({ equal: true });
    await expect(dev.read(3, 1)).rejects.toMatchObject({ code: 'ERR_VDE_RANGE' });
  });

  it('reopening keeps the data', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true, blockSize: 1024 });
    await dev.grow(50);
    for (let b = 0; b < 50; b += 7) await dev.write(b, block(1024, b + 1));
    await dev.sync();
    await dev.close();
    const again = await openTracked(p, { blockSize: 1024 });
    expect(again.blockCount).toBe(50);
    expect(again.fileSizeBytes).toBe(50 * 1024);
    for (let b = 0; b < 50; b++) expect(sameBytes(await again.read(b, 1), block(1024, b % 7 === 0 ? b + 1 : 0))).toEqual({ equal: true });
  });

  it('grow extends the file sparsely and reads past EOF inside blockCount give zeros', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 4096 });
    await dev.grow(10_000);
    const st = await stat(p);
    expect(st.size).toBe(10_000 * 4096);
    expect(dev.fileSizeBytes).toBe(10_000 * 4096);
    // Sparse: far fewer bytes allocated than the size (on file systems that support holes).
    expect(st.blocks * 512).toBeLessThan(st.size);
    await dev.write(1, block(4096, 3));
    // Someone truncates the file under us: bytes past EOF read as zeros, not as an error or garbage.
    await truncate(p, 4096 + 2048);
    const got = await dev.read(0, 4);
    expect(sameBytes(got.subarray(0, 4096), block(4096, 0))).toEqual({ equal: true });
    expect(sameBytes(got.subarray(4096, 4096 + 2048), block(2048, 3))).toEqual({ equal: true });
    expect(sameBytes(got.subarray(4096 + 2048), new Uint8Array(4096 * 2 + 2048))).toEqual({ equal: true });
  });

  it('grows issued together run one at a time: a smaller one never truncates the file under a larger one', async () => {
    // Two ftruncates in flight could land in either order; the file must end at the largest size on every run.
    for (let round = 0; round < 20; round++) {
      const p = await tempPath(`g${round}.vde`);
      const dev = await FileBlockDevice.open(p, { create: true, blockSize: 4096 });
      await Promise.all([dev.grow(16), dev.grow(4), dev.grow(9)]);
      expect((await stat(p)).size).toBe(16 * 4096);
      await Promise.all([dev.grow(32), dev.grow(20)]);
      await dev.write(30, block(4096, 0xab));
      await dev.sync();
      expect((await stat(p)).size).toBe(32 * 4096);
      await dev.close();
      const again = await FileBlockDevice.open(p, { blockSize: 4096 });
      expect(again.blockCount).toBe(32);
      await again.close();
    }
  });
});

describe('FileBlockDevice I/O paths', () => {
  it('retries short reads and writes until every byte is done', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 4096 });
    await dev.grow(8);
    const handle = fileHandleOf(dev);
    const realWrite = handle.write.bind(handle) as (b: Uint8Array, o: number, l: number, pos: number) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;
    const realRead = handle.read.bind(handle) as (b: Uint8Array, o: number, l: number, pos: number) => Promise<{ bytesRead: number; buffer: Uint8Array }>;
    let writeCalls = 0;
    let readCalls = 0;
    Object.assign(handle, {
      write: (b: Uint8Array, o: number, l: number, pos: number) => {
        writeCalls++;
        return realWrite(b, o, Math.min(l, 1000), pos);
      },
      read: (b: Uint8Array, o: number, l: number, pos: number) => {
        readCalls++;
        return realRead(b, o, Math.min(l, 777), pos);
      },
    });
    const data = randomBytes(3 * 4096);
    await dev.write(2, data);
    expect(writeCalls).toBe(Math.ceil((3 * 4096) / 1000));
    expect(sameBytes(await dev.read(2, 3), new Uint8Array(data))).toEqual({ equal: true });
    expect(readCalls).toBe(Math.ceil((3 * 4096) / 777));
  });

  it('turns ENOSPC into FullError and EIO into IoError', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(2);
    const handle = fileHandleOf(dev);
    Object.assign(handle, { write: () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })) });
    const full = await dev.write(0, block(512, 1)).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(FullError);
    expect(full).toMatchObject({ code: 'ERR_VDE_FULL' });
    Object.assign(handle, { read: () => Promise.reject(Object.assign(new Error('bad sector'), { code: 'EIO' })) });
    const io = await dev.read(0, 1).catch((e: unknown) => e);
    expect(io).toBeInstanceOf(IoError);
    expect(io).toMatchObject({ code: 'ERR_VDE_IO', errno: 'EIO' });
  });

  it('sync waits for writes that started before it, then fsyncs', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(4);
    await dev.sync();
    const handle = fileHandleOf(dev);
    const events: string[] = [];
    const realWrite = handle.write.bind(handle) as (b: Uint8Array, o: number, l: number, pos: number) => Promise<{ bytesWritten: number }>;
    const realDatasync = handle.datasync.bind(handle);
    Object.assign(handle, {
      write: async (b: Uint8Array, o: number, l: number, pos: number) => {
        await new Promise((r) => setTimeout(r, 30));
        const result = await realWrite(b, o, l, pos);
        events.push(`write@${pos}`);
        return result;
      },
      datasync: async () => {
        events.push('datasync');
        return realDatasync();
      },
    });
    const w1 = dev.write(0, block(512, 1));
    const w2 = dev.write(3, block(512, 2));
    await dev.sync();
    expect(events.slice(-1)).toEqual(['datasync']);
    expect(events).toContain('write@0');
    expect(events).toContain('write@1536');
    await Promise.all([w1, w2]);
  });

  it('uses sync() after the size changed and datasync() otherwise', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    const handle = fileHandleOf(dev);
    const calls: string[] = [];
    const realSync = handle.sync.bind(handle);
    const realDatasync = handle.datasync.bind(handle);
    Object.assign(handle, {
      sync: () => (calls.push('sync'), realSync()),
      datasync: () => (calls.push('datasync'), realDatasync()),
    });
    await dev.sync();
    await dev.grow(8);
    await dev.sync();
    await dev.write(1, block(512, 4));
    await dev.sync();
    expect(calls).toEqual(['datasync', 'sync', 'datasync']);
  });

  it('a failed sync poisons the device: later writes, grows and syncs reject with ERR_VDE_POISONED', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(4);
    await dev.write(0, block(512, 1));
    await dev.sync();
    const handle = fileHandleOf(dev);
    let datasyncCalls = 0;
    Object.assign(handle, {
      datasync: () => {
        datasyncCalls++;
        return Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
      },
    });
    await dev.write(1, block(512, 2));
    const first = await dev.sync().catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'ERR_VDE_IO', errno: 'EIO' });
    // Never retried: the later sync fails without calling fsync again.
    const second = await dev.sync().catch((e: unknown) => e);
    expect(second).toBeInstanceOf(PoisonedError);
    expect(second).toMatchObject({ code: 'ERR_VDE_POISONED' });
    expect(datasyncCalls).toBe(1);
    await expect(dev.write(2, block(512, 3))).rejects.toMatchObject({ code: 'ERR_VDE_POISONED' });
    await expect(dev.grow(100)).rejects.toMatchObject({ code: 'ERR_VDE_POISONED' });
    expect(dev.blockCount).toBe(4);
    // Reads still work; close still works.
    expect(sameBytes(await dev.read(0, 1), block(512, 1))).toEqual({ equal: true });
  });
});

type WriteFn = (b: Uint8Array, o: number, l: number, pos: number) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;

/** Logs the calls made on a FileHandle (`write@<position>`, `datasync`, `sync`) into `calls`, still doing them. */
function spyHandle(handle: FileHandle, calls: string[], tag = ''): { realWrite: WriteFn } {
  const realWrite = handle.write.bind(handle) as WriteFn;
  const realDatasync = handle.datasync.bind(handle);
  const realSync = handle.sync.bind(handle);
  Object.assign(handle, {
    write: (b: Uint8Array, o: number, l: number, pos: number) => (calls.push(`${tag}write@${pos}`), realWrite(b, o, l, pos)),
    datasync: () => (calls.push(`${tag}datasync`), realDatasync()),
    sync: () => (calls.push(`${tag}sync`), realSync()),
  });
  return { realWrite };
}

function eio(): Error {
  return Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
}

describe('FileBlockDevice.writeDurable', () => {
  /** A device of 8 blocks of 512 bytes, its size synced, and its O_DSYNC handle already open. */
  async function ready(): Promise<{ dev: FileBlockDevice; p: string }> {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(8);
    await dev.sync();
    await dev.writeDurable(0, block(512, 0xaa));
    expect(durableHandleOf(dev)).toBeTruthy();
    return { dev, p };
  }

  it('is ONE write on an O_DSYNC descriptor when nothing completed is unsynced: no fsync, data there after reopen', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true, blockSize: 512 });
    await dev.grow(8);
    await dev.sync();
    expect(durableHandleOf(dev)).toBeUndefined(); // opened lazily
    const calls: string[] = [];
    spyHandle(fileHandleOf(dev), calls);
    await dev.writeDurable(2, block(512, 7));
    const durable = durableHandleOf(dev);
    expect(durable).toBeTruthy();
    if (process.platform === 'linux') {
      const fdinfo = await readFile(`/proc/self/fdinfo/${durable!.fd}`, 'utf8');
      const flags = Number.parseInt(/flags:\s*([0-7]+)/.exec(fdinfo)![1]!, 8);
      expect(flags & constants.O_DSYNC).toBe(constants.O_DSYNC);
      expect(flags & 3).toBe(constants.O_RDWR); // O_ACCMODE is 3 on Linux
    }
    spyHandle(durable!, calls, 'dsync:');
    await dev.writeDurable(3, block(512, 8));
    await dev.writeDurable(4, new Uint8Array(2 * 512).fill(9));
    expect(calls).toEqual(['dsync:write@1536', 'dsync:write@2048']); // nothing on the main handle
    expect(sameBytes(await dev.read(2, 4), new Uint8Array([...block(512, 7), ...block(512, 8), ...block(1024, 9)]))).toEqual({
      equal: true,
    });
    await dev.close();
    expect(durable!.fd).toBe(-1); // close closed it
    const again = await openTracked(p, { blockSize: 512 });
    expect(sameBytes(await again.read(2, 1), block(512, 7))).toEqual({ equal: true });
  });

  it('falls back to write + datasync when a completed write is unsynced; a write still in flight does not force it', async () => {
    const { dev } = await ready();
    const calls: string[] = [];
    spyHandle(fileHandleOf(dev), calls);
    spyHandle(durableHandleOf(dev)!, calls, 'dsync:');
    await dev.write(1, block(512, 1)); // completed, not synced
    await dev.writeDurable(2, block(512, 2));
    expect(calls).toEqual(['write@512', 'write@1024', 'datasync']);
    calls.length = 0;
    await dev.writeDurable(3, block(512, 3)); // the fallback's sync covered everything: fast again
    expect(calls).toEqual(['dsync:write@1536']);

    // A write in flight when writeDurable is called need not be covered (as with sync()).
    calls.length = 0;
    const main = fileHandleOf(dev);
    const spied = main.write.bind(main) as WriteFn;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    Object.assign(main, { write: async (b: Uint8Array, o: number, l: number, pos: number) => (await gate, spied(b, o, l, pos)) });
    const inFlight = dev.write(4, block(512, 4));
    await dev.writeDurable(5, block(512, 5));
    expect(calls).toEqual(['dsync:write@2560']);
    open();
    await inFlight;
    Object.assign(main, { write: spied });
    // Now it has completed unsynced: the next one falls back.
    calls.length = 0;
    await dev.writeDurable(6, block(512, 6));
    expect(calls).toEqual(['write@3072', 'datasync']);
    for (let b = 1; b <= 6; b++) expect(sameBytes(await dev.read(b, 1), block(512, b))).toEqual({ equal: true });
  });

  it('a write that completes while a sync is in flight is not taken for synced', async () => {
    const { dev } = await ready();
    const calls: string[] = [];
    const main = fileHandleOf(dev);
    spyHandle(main, calls);
    spyHandle(durableHandleOf(dev)!, calls, 'dsync:');
    const spiedDatasync = main.datasync.bind(main);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    Object.assign(main, { datasync: async () => (await gate, spiedDatasync()) });
    const syncing = dev.sync(); // its fsync is issued (held) before the write below completes
    await new Promise((r) => setTimeout(r, 10));
    await dev.write(1, block(512, 1));
    open();
    await syncing;
    Object.assign(main, { datasync: spiedDatasync });
    calls.length = 0;
    await dev.writeDurable(2, block(512, 2));
    expect(calls).toEqual(['write@1024', 'datasync']);
  });

  it('falls back to write + fsync (not datasync) when the size changed since the last sync', async () => {
    const { dev } = await ready();
    const calls: string[] = [];
    spyHandle(fileHandleOf(dev), calls);
    spyHandle(durableHandleOf(dev)!, calls, 'dsync:');
    await dev.grow(16);
    await dev.writeDurable(12, block(512, 12));
    expect(calls).toEqual(['write@6144', 'sync']);
    calls.length = 0;
    await dev.writeDurable(13, block(512, 13));
    expect(calls).toEqual(['dsync:write@6656']);
  });

  it('falls back for good when the path no longer names the device file', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512, lock: false });
    await dev.grow(4);
    await dev.sync();
    await rename(p, `${p}.moved`);
    await writeFile(p, new Uint8Array(4 * 512)); // another file under the old name
    const calls: string[] = [];
    spyHandle(fileHandleOf(dev), calls);
    await dev.writeDurable(1, block(512, 5));
    expect(durableHandleOf(dev)).toBeNull();
    await dev.writeDurable(2, block(512, 6));
    expect(calls).toEqual(['write@512', 'datasync', 'write@1024', 'datasync']);
    const moved = new Uint8Array(await readFile(`${p}.moved`));
    expect(sameBytes(moved.subarray(512, 1536), new Uint8Array([...block(512, 5), ...block(512, 6)]))).toEqual({ equal: true });
    expect(sameBytes(new Uint8Array(await readFile(p)), new Uint8Array(4 * 512))).toEqual({ equal: true });
  });

  it('retries short durable writes until every byte is done', async () => {
    const { dev } = await ready();
    const durable = durableHandleOf(dev)!;
    const realWrite = durable.write.bind(durable) as WriteFn;
    let calls = 0;
    Object.assign(durable, {
      write: (b: Uint8Array, o: number, l: number, pos: number) => (calls++, realWrite(b, o, Math.min(l, 700), pos)),
    });
    const data = randomBytes(4 * 512);
    await dev.writeDurable(3, data);
    expect(calls).toBe(Math.ceil((4 * 512) / 700));
    expect(sameBytes(await dev.read(3, 4), new Uint8Array(data))).toEqual({ equal: true });
  });

  it('a failed durable write poisons the device like a failed sync; reads still work', async () => {
    const { dev } = await ready();
    const durable = durableHandleOf(dev)!;
    let attempts = 0;
    Object.assign(durable, { write: () => (attempts++, Promise.reject(eio())) });
    const err = await dev.writeDurable(1, block(512, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(err).toMatchObject({ code: 'ERR_VDE_IO', errno: 'EIO' });
    expect((err as Error).message).toMatch(/poisoned/);
    for (const late of [dev.writeDurable(2, block(512, 2)), dev.write(2, block(512, 2)), dev.sync(), dev.grow(100)]) {
      const e = await late.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PoisonedError);
      expect((e as PoisonedError).cause).toMatchObject({ code: 'EIO' });
    }
    expect(attempts).toBe(1); // never retried
    expect(sameBytes(await dev.read(0, 1), block(512, 0xaa))).toEqual({ equal: true });
  });

  it('a failed write on the fallback path poisons too (one contract for both paths)', async () => {
    const { dev } = await ready();
    await dev.write(1, block(512, 1)); // unsynced: the next writeDurable falls back
    Object.assign(fileHandleOf(dev), { write: () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })) });
    await expect(dev.writeDurable(2, block(512, 2))).rejects.toBeInstanceOf(FullError);
    await expect(dev.sync()).rejects.toBeInstanceOf(PoisonedError);
    await expect(dev.writeDurable(3, block(512, 3))).rejects.toBeInstanceOf(PoisonedError);
  });

  it('after a failed sync it rejects with PoisonedError and writes nothing', async () => {
    const { dev } = await ready();
    Object.assign(fileHandleOf(dev), { datasync: () => Promise.reject(eio()) });
    await dev.write(1, block(512, 1));
    await expect(dev.sync()).rejects.toBeInstanceOf(IoError);
    const calls: string[] = [];
    spyHandle(durableHandleOf(dev)!, calls, 'dsync:');
    await expect(dev.writeDurable(2, block(512, 2))).rejects.toBeInstanceOf(PoisonedError);
    expect(calls).toEqual([]);
  });

  it('read-only devices throw ReadOnlyError and open no O_DSYNC handle; closed devices throw ClosedError', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(2 * 4096));
    const ro = await openTracked(p, { readOnly: true });
    await expect(ro.writeDurable(0, block(4096, 1))).rejects.toBeInstanceOf(ReadOnlyError);
    expect(durableHandleOf(ro)).toBeUndefined();
    const dev = await FileBlockDevice.open(await tempPath(), { create: true, blockSize: 512 });
    await dev.grow(2);
    await dev.close();
    await expect(dev.writeDurable(0, block(512, 1))).rejects.toBeInstanceOf(ClosedError);
    expect(durableHandleOf(dev)).toBeUndefined();
  });

  it('close while the first call opens the O_DSYNC handle: the call rejects with ClosedError and the handle is closed', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true, blockSize: 512 });
    await dev.grow(2);
    await dev.sync();
    const pending = dev.writeDurable(1, block(512, 1)).catch((e: unknown) => e);
    await dev.close();
    expect(await pending).toBeInstanceOf(ClosedError);
    const durable = durableHandleOf(dev);
    if (durable) expect(durable.fd).toBe(-1);
    expect((await stat(p)).size).toBe(2 * 512);
    expect(sameBytes(new Uint8Array(await readFile(p)), new Uint8Array(1024))).toEqual({ equal: true });
  });
});

describe('FileBlockDevice.writeDurableSync', () => {
  it('writes on the O_DSYNC descriptor only when that alone makes it durable; otherwise returns false and writes nothing', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(8);
    await dev.sync();
    expect(dev.writeDurableSync(1, block(512, 1))).toBe(false); // the O_DSYNC handle is not open yet
    await dev.writeDurable(0, block(512, 0xaa)); // opens it
    const calls: string[] = [];
    spyHandle(fileHandleOf(dev), calls);
    spyHandle(durableHandleOf(dev)!, calls, 'dsync:');
    expect(dev.writeDurableSync(1, block(512, 1))).toBe(true);
    expect(dev.writeDurableSync(2, new Uint8Array(1024).fill(2))).toBe(true);
    await dev.write(5, block(512, 5)); // completed, unsynced: one O_DSYNC write would not cover it
    expect(dev.writeDurableSync(4, block(512, 4))).toBe(false);
    await dev.sync();
    expect(dev.writeDurableSync(4, block(512, 4))).toBe(true);
    await dev.grow(9); // the size is unsynced
    expect(dev.writeDurableSync(6, block(512, 6))).toBe(false);
    await dev.sync();
    expect(dev.writeDurableSync(6, block(512, 6))).toBe(true);
    // Synchronous: no FileHandle call at all, only the sync and write of the fallbacks' own calls.
    expect(calls).toEqual(['write@2560', 'datasync', 'sync']);
    expect(sameBytes(await dev.read(1, 1), block(512, 1))).toEqual({ equal: true });
    await dev.close();
    const again = await openTracked(p, { blockSize: 512 });
    const want = [0xaa, 1, 2, 2, 4, 5, 6].map((f) => block(512, f));
    expect(sameBytes(await again.read(0, 7), new Uint8Array(want.flatMap((b) => [...b])))).toEqual({ equal: true });
  });

  it('a failed durable write on this thread poisons the device and throws a typed error; reads still work', async () => {
    const p = await tempPath();
    const dev = await openTracked(p, { create: true, blockSize: 512 });
    await dev.grow(4);
    await dev.sync();
    await dev.writeDurable(0, block(512, 9));
    await durableHandleOf(dev)!.close(); // its descriptor is gone: the next write fails with EBADF
    let err: unknown;
    try {
      dev.writeDurableSync(1, block(512, 1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IoError);
    expect((err as Error).message).toMatch(/poisoned/);
    await expect(dev.write(2, block(512, 2))).rejects.toBeInstanceOf(PoisonedError);
    expect(() => dev.writeDurableSync(2, block(512, 2))).toThrow(PoisonedError);
    expect(sameBytes(await dev.read(0, 1), block(512, 9))).toEqual({ equal: true });
  });
});

describe('FileBlockDevice one-writer lock', () => {
  it('a second open in the same process is ERR_VDE_LOCKED; after close it opens again', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true });
    const lockText = await readFile(`${p}.lock`, 'utf8');
    const owner = parseLock(lockText);
    expect(owner?.pid).toBe(process.pid);
    await expect(FileBlockDevice.open(p)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
    // Same file through another spelling of the path.
    await expect(FileBlockDevice.open(path.join(path.dirname(p), '.', path.basename(p)))).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
    // Readers take no lock; lock: false skips it.
    const reader = await openTracked(p, { readOnly: true });
    expect(reader.readOnly).toBe(true);
    await dev.close();
    await expect(stat(`${p}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    const again = await openTracked(p);
    expect(again.readOnly).toBe(false);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.token).not.toBe(owner?.token);
  });

  it('lock: false takes no lock file', async () => {
    const p = await tempPath();
    await openTracked(p, { create: true, lock: false });
    await expect(stat(`${p}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('the lock follows the file, not the path: a symbolic link or a hard link is ERR_VDE_LOCKED', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true });
    try {
      const viaSymlink = `${p}.symlink`;
      await symlink(p, viaSymlink);
      await expect(FileBlockDevice.open(viaSymlink)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
      // A symbolic link to the directory, the file's own name under it.
      const dirLink = `${path.dirname(p)}.dirlink-${path.basename(p)}`;
      await symlink(path.dirname(p), dirLink);
      try {
        await expect(FileBlockDevice.open(path.join(dirLink, path.basename(p)))).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
      } finally {
        await unlink(dirLink);
      }
      const viaHardLink = `${p}.hardlink`;
      await link(p, viaHardLink);
      await expect(FileBlockDevice.open(viaHardLink)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
      // The failed open through the hard link left no lock file of its own behind.
      await expect(stat(`${viaHardLink}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await dev.close();
    }
    // Once closed, the hard link opens (and the identity was released).
    const again = await openTracked(`${p}.hardlink`);
    expect(again.readOnly).toBe(false);
  });

  it.skipIf(!existsSync('/proc/self/stat'))('a lock whose pid now belongs to a process started at another time (a reboot) is stale', async () => {
    const p = await tempPath();
    await writeFile(p, block(4096, 6));
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      // Written by a VDE process that started a day ago and had this pid: the live process is someone else.
      await writeFile(`${p}.lock`, formatLock({ pid, token: randomBytes(16).toString('hex'), startedMs: Date.now() - 86_400_000 }));
      const dev = await openTracked(p);
      expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
      await dev.close();
      // The same pid with its real start time is a live owner.
      await writeFile(`${p}.lock`, formatLock({ pid, token: randomBytes(16).toString('hex'), startedMs: startedMsOf(pid)! }));
      await expect(FileBlockDevice.open(p)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('a path with a NUL character is ERR_VDE_INVALID_ARGUMENT', async () => {
    const p = await tempPath();
    await expect(FileBlockDevice.open(`${p}\0x`, { create: true })).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
  });

  it('a live foreign process holding the lock gives ERR_VDE_LOCKED naming its pid; once it dies the lock is taken over', async () => {
    const p = await tempPath();
    await writeFile(p, block(4096, 5));
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      await writeFile(`${p}.lock`, formatLock({ pid, token: randomBytes(16).toString('hex'), startedMs: Date.now() }));
      const err = await FileBlockDevice.open(p).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_VDE_LOCKED' });
      expect((err as Error).message).toContain(String(pid));
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    const dev = await openTracked(p);
    expect(sameBytes(await dev.read(0, 1), block(4096, 5))).toEqual({ equal: true });
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
  });

  it('a stale lock from a dead pid is taken over', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(0));
    const dead = spawnSync(process.execPath, ['-e', '']);
    const deadPid = dead.pid;
    await writeFile(`${p}.lock`, formatLock({ pid: deadPid, token: 'a'.repeat(32), startedMs: 1 }));
    const dev = await FileBlockDevice.open(p);
    const owner = parseLock(await readFile(`${p}.lock`, 'utf8'));
    expect(owner?.pid).toBe(process.pid);
    expect(owner?.token).not.toBe('a'.repeat(32));
    await dev.close();
    await expect(stat(`${p}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a takeover marker left by a killed taker is removed at once; no temp files stay behind', async () => {
    // A taker killed mid-takeover used to leave an empty marker that blocked every writable open for 5 s.
    const p = await tempPath();
    await writeFile(p, new Uint8Array(0));
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const stale = formatLock({ pid: deadPid, token: 'a'.repeat(32), startedMs: 1 });
    await writeFile(`${p}.lock`, stale);
    await writeFile(`${p}.lock.takeover`, formatLock({ pid: deadPid, token: 'b'.repeat(32), startedMs: 1 }));
    const dev = await FileBlockDevice.open(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
    const left = (await readdir(path.dirname(p))).filter((n) => n.includes('.tmp') || n.endsWith('.takeover'));
    expect(left).toEqual([]);
    await dev.close();
  });

  it('read-only opens register in the reader table, with their mark; a writer sees them; entries of dead processes go', async () => {
    const p = await tempPath();
    const writer = await FileBlockDevice.open(p, { create: true });
    await writer.grow(4);
    expect(await writer.readerMarks()).toEqual([]);
    const r1 = await FileBlockDevice.open(p, { readOnly: true });
    const r2 = await FileBlockDevice.open(p, { readOnly: true });
    expect(await writer.readerMarks()).toEqual([null, null]); // registered before reading anything: mark unknown
    await r1.setReaderMark(7);
    await r2.setReaderMark(3);
    expect((await writer.readerMarks()).sort()).toEqual([3, 7]);
    await expect(r1.setReaderMark(-1)).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    await r1.close();
    expect(await writer.readerMarks()).toEqual([3]);
    // A reader process that died without closing: its entry is stale and removed.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(path.join(`${p}.readers`, `${deadPid}-0123456789abcdef`), `${deadPid}\n1\n5\n`);
    expect(await writer.readerMarks()).toEqual([3]);
    await r2.close();
    expect(await writer.readerMarks()).toEqual([]);
    await expect(stat(`${p}.readers`)).rejects.toMatchObject({ code: 'ENOENT' }); // the last reader removes the table
    // A table left with only a dead reader's entry (killed, no close): the writer removes the entry and the table.
    await mkdir(`${p}.readers`);
    await writeFile(path.join(`${p}.readers`, `${deadPid}-fedcba9876543210`), `${deadPid}\n1\n?\n`);
    expect(await writer.readerMarks()).toEqual([]);
    await expect(stat(`${p}.readers`)).rejects.toMatchObject({ code: 'ENOENT' });
    // lock: false takes no lock and registers no reader.
    const quiet = await FileBlockDevice.open(p, { readOnly: true, lock: false });
    expect(await writer.readerMarks()).toEqual([]);
    await quiet.close();
    await writer.close();
  });

  it('our own pid with another start time (pid reuse after a crash) is stale', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(0));
    await writeFile(`${p}.lock`, formatLock({ pid: process.pid, token: 'b'.repeat(32), startedMs: 1000 }));
    await openTracked(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.token).not.toBe('b'.repeat(32));
  });

  it('unparsable lock content is stale only when old', async () => {
    const p = await tempPath();
    await writeFile(p, new Uint8Array(0));
    await writeFile(`${p}.lock`, 'garbage');
    await expect(FileBlockDevice.open(p)).rejects.toMatchObject({ code: 'ERR_VDE_LOCKED' });
    const old = new Date(Date.now() - 60_000);
    await utimes(`${p}.lock`, old, old);
    await openTracked(p);
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))?.pid).toBe(process.pid);
  });

  it('close removes the lock file only if it still holds our token', async () => {
    const p = await tempPath();
    const dev = await FileBlockDevice.open(p, { create: true });
    const foreign = formatLock({ pid: 1, token: 'c'.repeat(32), startedMs: 5 });
    await writeFile(`${p}.lock`, foreign);
    await dev.close();
    expect(await readFile(`${p}.lock`, 'utf8')).toBe(foreign);
  });

  describe('from a child process', () => {
    let moduleUrl: string;
    beforeAll(async () => {
      const dir = await files.tempDir();
      moduleUrl = await transpileSources(path.join(dir, 'lib'));
    });

    function childOpen(p: string): { stdout: string; stderr: string } {
      const script = `
        const { FileBlockDevice } = await import(${JSON.stringify(moduleUrl)});
        try {
          const dev = await FileBlockDevice.open(${JSON.stringify(p)});
          await dev.write(0, new Uint8Array(4096).fill(0xee));
          await dev.sync();
          await dev.close();
          console.log('OPENED');
        } catch (err) {
          console.log(err.code + ' ' + err.message);
        }`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
      return { stdout: r.stdout, stderr: r.stderr };
    }

    it('a second writer process gets ERR_VDE_LOCKED and does not touch the container', async () => {
      const p = await tempPath();
      const dev = await openTracked(p, { create: true });
      await dev.grow(1);
      await dev.write(0, block(4096, 1));
      await dev.sync();
      const before = await stat(p);
      const { stdout, stderr } = childOpen(p);
      expect(stderr).toBe('');
      expect(stdout).toContain('ERR_VDE_LOCKED');
      expect(stdout).toContain(String(process.pid));
      expect(sameBytes(await dev.read(0, 1), block(4096, 1))).toEqual({ equal: true });
      expect((await stat(p)).mtimeMs).toBe(before.mtimeMs);
      await dev.close();
      // Once we close, the child can open and write.
      expect(childOpen(p).stdout.trim()).toBe('OPENED');
      expect(sameBytes(new Uint8Array(await readFile(p)), block(4096, 0xee))).toEqual({ equal: true });
    });

    it('a writer process opening through a symbolic link gets ERR_VDE_LOCKED', async () => {
      const p = await tempPath();
      const dev = await openTracked(p, { create: true });
      await dev.grow(1);
      const viaSymlink = `${p}.symlink`;
      await symlink(p, viaSymlink);
      const { stdout, stderr } = childOpen(viaSymlink);
      expect(stderr).toBe('');
      expect(stdout).toContain('ERR_VDE_LOCKED');
      await dev.close();
      expect(childOpen(viaSymlink).stdout.trim()).toBe('OPENED');
    });
  });
});
