import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { VirtualDiskEngine } from '@vde/engine';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VdeLevel } from '../src/index.js';
import { compareBytes, scratchDir } from './helpers.js';

let dir: string;
let n = 0;
const engine = { walSizeBytes: 1 << 20 };

beforeAll(async () => {
  dir = await scratchDir('vde-level-');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function location(): string {
  return path.join(dir, `db-${n++}.vde`);
}

async function openDb(where = location()): Promise<VdeLevel<Buffer, Buffer>> {
  const db = new VdeLevel<Buffer, Buffer>(where, { keyEncoding: 'buffer', valueEncoding: 'buffer', engine });
  await db.open();
  return db;
}

describe('VdeLevel: round trips', () => {
  it('stores string keys and values like level', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.put('a', 'b');
    expect(await db.get('a')).toBe('b');
    expect(await db.get('missing')).toBeUndefined();
    expect(await db.has('a')).toBe(true);
    expect(await db.hasMany(['a', 'x'])).toEqual([true, false]);
    await db.del('a');
    expect(await db.get('a')).toBeUndefined();
    await db.close();
  });

  it('stores arbitrary bytes, the empty key and the empty value', async () => {
    const db = await openDb();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await db.put(Buffer.alloc(0), Buffer.from('empty key'));
    await db.put(all, Buffer.alloc(0));
    await db.put(Buffer.from([0xff, 0x00]), all);
    expect(await db.get(Buffer.alloc(0))).toEqual(Buffer.from('empty key'));
    expect(await db.get(all)).toEqual(Buffer.alloc(0));
    expect(await db.get(Buffer.from([0xff, 0x00]))).toEqual(all);
    expect(await db.keys().all()).toEqual([Buffer.alloc(0), all, Buffer.from([0xff, 0x00])]);
    await db.close();
  });

  it('supports view, utf8 and json encodings and large values', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.put('v', new Uint8Array([1, 2, 3]) as unknown as string, { valueEncoding: 'view' });
    expect(await db.get('v', { valueEncoding: 'view' })).toEqual(new Uint8Array([1, 2, 3]));
    await db.put('j', { a: [1, 'x'] } as unknown as string, { valueEncoding: 'json' });
    expect(await db.get('j', { valueEncoding: 'json' })).toEqual({ a: [1, 'x'] });
    const big = 'é'.repeat(300_000);
    await db.put('big', big);
    expect(await db.get('big')).toBe(big);
    expect(await db.getMany(['v', 'big', 'nope'], { valueEncoding: 'utf8' })).toEqual(['\u0001\u0002\u0003', big, undefined]);
    await db.close();
  });
});

describe('VdeLevel: ranges against a sorted model', () => {
  it('iterator, keys, values, seek and clear agree with the model', async () => {
    const db = await openDb();
    const keys = fc.sample(fc.uint8Array({ maxLength: 6 }), { numRuns: 300, seed: 42 });
    const model = new Map<string, Buffer>();
    for (const k of keys) model.set(Buffer.from(k).toString('hex'), Buffer.from(k));
    await db.batch([...model.values()].map((k) => ({ type: 'put' as const, key: k, value: Buffer.concat([Buffer.from('v'), k]) })));
    const sorted = [...model.values()].sort(compareBytes);
    const bound = fc.option(fc.uint8Array({ maxLength: 3 }).map((b) => Buffer.from(b)), { nil: undefined });
    await fc.assert(
      fc.asyncProperty(bound, bound, bound, bound, fc.boolean(), fc.integer({ min: -1, max: 20 }), async (gt, gte, lt, lte, reverse, limit) => {
        const opts = {
          ...(gt ? { gt } : {}),
          ...(gte ? { gte } : {}),
          ...(lt ? { lt } : {}),
          ...(lte ? { lte } : {}),
          reverse,
          limit,
        };
        let want = sorted.filter(
          (k) =>
            (gte ? compareBytes(k, gte) >= 0 : gt ? compareBytes(k, gt) > 0 : true) &&
            (lte ? compareBytes(k, lte) <= 0 : lt ? compareBytes(k, lt) < 0 : true),
        );
        if (reverse) want = want.reverse();
        if (limit >= 0) want = want.slice(0, limit);
        expect(await db.keys(opts).all()).toEqual(want);
        const entries = await db.iterator(opts).all();
        expect(entries.map(([k]) => k)).toEqual(want);
        expect(entries.map(([, v]) => v)).toEqual(want.map((k) => Buffer.concat([Buffer.from('v'), k])));
        expect(await db.values(opts).all()).toEqual(want.map((k) => Buffer.concat([Buffer.from('v'), k])));
      }),
      { numRuns: 40, seed: 7 },
    );
    // seek, forward and reverse
    const it = db.keys();
    const target = Buffer.from([0x80]);
    it.seek(target);
    expect(await it.next()).toEqual(sorted.find((k) => compareBytes(k, target) >= 0));
    await it.close();
    const rit = db.keys({ reverse: true });
    rit.seek(target);
    expect(await rit.next()).toEqual([...sorted].reverse().find((k) => compareBytes(k, target) <= 0));
    await rit.close();
    // clear a range with a limit, from the top
    const lo = Buffer.from([0x40]);
    const hi = Buffer.from([0xc0]);
    const inRange = sorted.filter((k) => compareBytes(k, lo) >= 0 && compareBytes(k, hi) < 0);
    await db.clear({ gte: lo, lt: hi, reverse: true, limit: 5 });
    const cleared = new Set(inRange.slice(-5).map((k) => k.toString('hex')));
    expect(await db.keys().all()).toEqual(sorted.filter((k) => !cleared.has(k.toString('hex'))));
    await db.clear({ gte: lo, lt: hi });
    expect(await db.keys().all()).toEqual(sorted.filter((k) => compareBytes(k, lo) < 0 || compareBytes(k, hi) >= 0));
    await db.close();
  });
});

describe('VdeLevel: batches', () => {
  it('applies a batch all or nothing: a bad operation fails the whole batch', async () => {
    const db = await openDb();
    await db.put(Buffer.from('keep'), Buffer.from('1'));
    const tooLong = Buffer.alloc(db.maxKeyBytes + 1, 1);
    await expect(
      db.batch([
        { type: 'put', key: Buffer.from('a'), value: Buffer.from('1') },
        { type: 'del', key: Buffer.from('keep') },
        { type: 'put', key: tooLong, value: Buffer.from('x') },
      ]),
    ).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_KEY' });
    expect(await db.keys().all()).toEqual([Buffer.from('keep')]);
    // repeated keys: the last operation of a key wins, in order
    await db.batch([
      { type: 'put', key: Buffer.from('k'), value: Buffer.from('1') },
      { type: 'del', key: Buffer.from('k') },
      { type: 'put', key: Buffer.from('k'), value: Buffer.from('3') },
      { type: 'put', key: Buffer.from('j'), value: Buffer.from('4') },
      { type: 'del', key: Buffer.from('j') },
    ]);
    expect(await db.get(Buffer.from('k'))).toEqual(Buffer.from('3'));
    expect(await db.get(Buffer.from('j'))).toBeUndefined();
    await db.close();
  });

  it('readers never see half of a batch', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.open();
    const keys = ['a', 'm', 'z'];
    await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: '0' })));
    const torn: string[] = [];
    const check = (values: (string | undefined)[], what: string): void => {
      if (new Set(values).size !== 1) torn.push(`${what}: ${values.join(',')}`);
    };
    let writing = true;
    const writer = (async () => {
      const batches: Promise<void>[] = [];
      for (let i = 1; i <= 60; i++) {
        batches.push(db.batch(keys.map((key) => ({ type: 'put' as const, key, value: String(i) }))));
        if (i % 4 === 0) await Promise.all(batches);
      }
      await Promise.all(batches);
      writing = false;
    })();
    const reader = async (r: number): Promise<number> => {
      let reads = 0;
      while (writing) {
        check(await db.getMany(keys), `getMany in reader ${r}`);
        if (reads % 8 === 0) check(await db.values().all(), `iterator in reader ${r}`);
        reads++;
      }
      return reads;
    };
    const counts = await Promise.all([reader(0), reader(1), reader(2), reader(3), writer]);
    expect(counts.slice(0, 4).reduce((a, b) => (a ?? 0) + (b ?? 0), 0)).toBeGreaterThan(10);
    expect(torn).toEqual([]);
    expect(await db.getMany(keys)).toEqual(['60', '60', '60']);
    await db.close();
  });
});

describe('VdeLevel: snapshots', () => {
  it('reads and iterators see the store as of the moment they were issued', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.put('k', 'old');
    const get = db.get('k');
    const it = db.iterator();
    const put = db.put('k', 'new');
    const put2 = db.put('later', 'x');
    expect(await get).toBe('old');
    await Promise.all([put, put2]);
    expect(await it.all()).toEqual([['k', 'old']]);
    expect(await db.iterator().all()).toEqual([
      ['k', 'new'],
      ['later', 'x'],
    ]);
    await db.close();
  });

  it('unawaited writes to one key apply in issue order, also across snapshot captures', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.open();
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      ops.push(db.put('k', String(i)));
      if (i % 3 === 0) ops.push(db.keys().all());
      if (i % 5 === 0) ops.push(db.del('k'));
    }
    await Promise.all(ops);
    expect(await db.get('k')).toBe('19');
    await db.close();
  });

  it('a put after an unawaited batch of the same key, and a clear after an unawaited put, keep issue order', async () => {
    // The engine orders one key's writes by when each takes the key's stripe, and a batch takes its stripes a few
    // turns after a put: submission order alone let the earlier batch win, and let a clear miss an earlier put.
    const db = new VdeLevel(location(), { engine });
    await db.open();
    for (let i = 0; i < 20; i++) {
      await Promise.all([db.batch([{ type: 'put', key: 'k', value: 'first' }]), db.put('k', 'second')]);
      expect(await db.get('k')).toBe('second');
      await Promise.all([db.batch().put('k', 'third').write(), db.put('k', 'fourth')]);
      expect(await db.get('k')).toBe('fourth');
      await Promise.all([db.batch([{ type: 'put', key: 'k', value: 'x' }]), db.del('k')]);
      expect(await db.get('k')).toBeUndefined();
      await Promise.all([db.put('k', 'gone'), db.clear()]);
      expect(await db.get('k')).toBeUndefined();
      await Promise.all([db.put('a', 'first key'), db.put('b', 'y'), db.clear({ limit: 1 })]);
      expect(await db.get('a')).toBeUndefined();
      expect(await db.get('b')).toBe('y');
      await db.clear();
    }
    await db.close();
  });

  it('explicit snapshots keep their view until closed; clear() does not remove later writes', async () => {
    const db = new VdeLevel(location(), { engine });
    await db.open();
    await db.put('a', '1');
    const snap = db.snapshot();
    await db.put('a', '2');
    await db.put('b', '3');
    expect(await db.get('a', { snapshot: snap })).toBe('1');
    expect(await db.keys({ snapshot: snap }).all()).toEqual(['a']);
    const clear = db.clear();
    const put = db.put('c', 'after clear');
    await Promise.all([clear, put]);
    expect(await db.iterator().all()).toEqual([['c', 'after clear']]);
    expect(await db.iterator({ snapshot: snap }).all()).toEqual([['a', '1']]);
    await snap.close();
    await db.close();
  });
});

describe('VdeLevel: open, reopen, limits', () => {
  it('persists across close and reopen', async () => {
    const where = location();
    const db = new VdeLevel(where, { engine });
    await db.batch([
      { type: 'put', key: 'x', value: '1' },
      { type: 'put', key: 'y', value: '2' },
    ]);
    await db.put('z', '3');
    await db.del('y');
    await db.close();
    const again = new VdeLevel(where, { createIfMissing: false });
    expect(await again.iterator().all()).toEqual([
      ['x', '1'],
      ['z', '3'],
    ]);
    // the same instance reopens too
    await again.close();
    await again.open();
    expect(await again.get('x')).toBe('1');
    await again.close();
  });

  it('close() lets the reads and writes issued before it finish (they were rejected with ERR_VDE_CLOSED)', async () => {
    const where = location();
    const db = new VdeLevel(where, { engine });
    await db.open();
    await db.batch(Array.from({ length: 600 }, (_, i) => ({ type: 'put' as const, key: `c${i}`, value: 'v' })));
    const snapshot = db.snapshot();
    const issued: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) issued.push(db.put(`a${i}`, 'x'));
    issued.push(db.clear({ gte: 'c', lt: 'd' })); // three engine batches of 256 keys at most
    for (let i = 0; i < 5; i++) issued.push(db.put(`b${i}`, 'y'));
    issued.push(db.del('a0'), db.batch([{ type: 'put', key: 'd', value: 'z' }]));
    // A live read waits for the clear (a multi-key write) issued before it, and the clear for the puts before it.
    issued.push(db.get('c1'), db.getMany(['c2', 'a1']), db.has('c3'), db.get('c4', { snapshot }));
    const closed = db.close();
    const results = await Promise.allSettled(issued);
    await closed;
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(results.slice(-4).map((r) => (r as PromiseFulfilledResult<unknown>).value)).toEqual([undefined, [undefined, 'x'], false, 'v']);
    await db.open();
    expect(await db.keys().all()).toEqual(['a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4', 'd']);
    await db.close();
  });

  it('clear() works on a small log with long keys (a chunk of 256 deletes was ERR_VDE_TOO_LARGE)', async () => {
    const db = new VdeLevel(location(), { engine: { walSizeBytes: 64 << 10 } });
    await db.open();
    const keys = Array.from({ length: 300 }, (_, i) => `${'k'.repeat(497)}${String(i).padStart(3, '0')}`);
    for (const key of keys) await db.put(key, 'v');
    await db.put('zz', 'kept');
    await db.clear({ lt: 'l', limit: 290 });
    expect(await db.keys().all()).toEqual([...keys.slice(290), 'zz']);
    await db.clear({ lt: 'l' });
    expect(await db.keys().all()).toEqual(['zz']);
    await db.close();
  });

  it('honours createIfMissing and errorIfExists', async () => {
    const where = location();
    const missing = new VdeLevel(where, { createIfMissing: false });
    await expect(missing.open()).rejects.toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN', cause: { code: 'ERR_VDE_NOT_FOUND' } });
    await expect(fs.stat(where)).rejects.toMatchObject({ code: 'ENOENT' });
    const db = new VdeLevel(where, { engine });
    await db.open();
    await db.close();
    const exists = new VdeLevel(where, { errorIfExists: true });
    await expect(exists.open()).rejects.toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN', cause: { code: 'ERR_VDE_EXISTS' } });
  });

  it('refuses engine options it would ignore or misread, when constructed and before creating anything', async () => {
    const where = location();
    const bad: unknown[] = [5, null, 'x', [], { create: true }, { readOnly: true }];
    for (const e of bad) {
      expect(() => new VdeLevel(where, { engine: e as never }), JSON.stringify(e)).toThrow(
        expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' }) as Error,
      );
    }
    expect(() => new VdeLevel(where, null as never)).toThrow(expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' }) as Error);
    await expect(fs.stat(where)).rejects.toMatchObject({ code: 'ENOENT' });
    const db = new VdeLevel(where, { engine: undefined, createIfMissing: true });
    await db.open();
    await db.close();
  });

  it('exports the engine error classes it throws (same classes as @vde/engine)', async () => {
    const level = await import('../src/index.js');
    const engineModule = await import('@vde/engine');
    for (const name of ['VdeError', 'InvalidArgumentError', 'InvalidKeyError', 'LockedError', 'NotFoundError', 'ExistsError'] as const) {
      expect(level[name], name).toBe(engineModule[name]);
    }
    expect(() => new VdeLevel(location(), { engine: 5 as never })).toThrow(level.InvalidArgumentError);
  });

  it('refuses a second writer on the same container', async () => {
    const where = location();
    const a = new VdeLevel(where, { engine });
    await a.open();
    const b = new VdeLevel(where);
    await expect(b.open()).rejects.toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN', cause: { code: 'ERR_VDE_LOCKED' } });
    await a.close();
  });

  it('maxKeyBytes of a closed database is ERR_VDE_CLOSED', async () => {
    const db = await openDb();
    await db.close();
    expect(() => db.maxKeyBytes).toThrow(expect.objectContaining({ code: 'ERR_VDE_CLOSED' }));
    await db.open();
    expect(db.maxKeyBytes).toBe(511);
    await db.close();
  });

  it('accepts keys up to maxKeyBytes and rejects longer ones with ERR_VDE_INVALID_KEY', async () => {
    const db = await openDb();
    expect(db.maxKeyBytes).toBe(511); // the README's figure for the default 4 KiB blocks
    const longest = Buffer.alloc(db.maxKeyBytes, 0xff);
    await db.put(longest, Buffer.from('ok'));
    expect(await db.get(longest)).toEqual(Buffer.from('ok'));
    const tooLong = Buffer.alloc(db.maxKeyBytes + 1, 0xff);
    const err: unknown = await db.put(tooLong, Buffer.from('no')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_VDE_INVALID_KEY' });
    expect((err as Error).message).toMatch(/at most \d+ bytes/);
    await expect(db.get(tooLong)).rejects.toMatchObject({ code: 'ERR_VDE_INVALID_KEY' });
    expect(await db.keys().all()).toEqual([longest]);
    await db.close();
  });

  it('ignores objects of the container that are not level entries', async () => {
    const where = location();
    const vde = await VirtualDiskEngine.open(where, engine);
    await vde.store('Labc', 'foreign, inside the prefix');
    await vde.store('other', 'foreign');
    await vde.close();
    const db = new VdeLevel(where);
    await db.put('k', 'v');
    expect(await db.iterator().all()).toEqual([['k', 'v']]);
    await db.clear();
    expect(await db.keys().all()).toEqual([]);
    await db.close();
    const check = await VirtualDiskEngine.open(where);
    const left: string[] = [];
    for await (const info of check.list()) left.push(info.key);
    expect(left).toEqual(['Labc', 'other']);
    await check.check();
    await check.close();
  });
});

describe('VdeLevel: value buffers', () => {
  it('stores the bytes a value buffer held when put, batch or a chained batch put was called (a reused buffer stored its last bytes, or a checksum mismatch)', async () => {
    const where = location();
    const db = await openDb(where);
    const small = Buffer.alloc(8);
    const large = Buffer.alloc(64 << 10); // written from the buffer, not inline in the index
    const issued: Promise<void>[] = [];
    for (let i = 0; i < 3; i++) {
      small.writeUInt32BE(i);
      large.fill(i);
      issued.push(db.put(Buffer.from(`p${i}`), small), db.put(Buffer.from(`q${i}`), large));
      issued.push(db.batch([{ type: 'put', key: Buffer.from(`b${i}`), value: small }]));
    }
    await Promise.all(issued);
    const chained = db.batch();
    for (let i = 0; i < 3; i++) {
      small.writeUInt32BE(i);
      chained.put(Buffer.from(`c${i}`), small);
    }
    await chained.write();
    const sub = db.sublevel<string, Uint8Array>('s', { valueEncoding: 'view' });
    await sub.open();
    const subChained = sub.batch();
    for (let i = 0; i < 3; i++) {
      small.writeUInt32BE(i);
      subChained.put(`c${i}`, small);
    }
    await subChained.write();
    small.fill(0xee);
    large.fill(0xee);
    const word = (i: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(i);
      return b;
    };
    for (const p of ['p', 'b', 'c']) {
      expect(await db.getMany([0, 1, 2].map((i) => Buffer.from(`${p}${i}`)))).toEqual([word(0), word(1), word(2)]);
    }
    expect(await db.getMany([0, 1, 2].map((i) => Buffer.from(`q${i}`)))).toEqual([0, 1, 2].map((i) => Buffer.alloc(64 << 10, i)));
    expect((await sub.getMany(['c0', 'c1', 'c2'])).map((v) => Buffer.from(v!))).toEqual([word(0), word(1), word(2)]);
    await db.close();
    const vde = await VirtualDiskEngine.open(where, engine);
    await vde.check();
    await vde.close();
  });
});
