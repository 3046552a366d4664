import { Readable } from 'node:stream';
import { join } from 'node:path';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine, VdeError } from '@vde/engine';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SMALL, bytes, checked, collect, expectBytes, expectCode, memoryEngine, storeUntilFull, tempDir } from './helpers.js';

describe('object API round trip', () => {
  it('stores, retrieves, stats, lists, deletes', async () => {
    const { vde } = await memoryEngine();
    const info = await vde.store('hello', 'world', { metadata: { type: 'text/plain' } });
    expect(info).toMatchObject({ key: 'hello', size: 5, metadata: { type: 'text/plain' } });
    expect(info.created).toBeInstanceOf(Date);
    expect(typeof info.etag).toBe('string');
    expect(new TextDecoder().decode(await vde.retrieve('hello'))).toBe('world');
    expect(await vde.exists('hello')).toBe(true);
    expect(await vde.exists('nope')).toBe(false);
    expect(await vde.stat('hello')).toEqual(info);
    expect((await collect(vde.list())).map((o) => o.key)).toEqual(['hello']);
    expect(await vde.delete('hello')).toBe(true);
    expect(await vde.delete('hello')).toBe(false);
    await expectCode(vde.retrieve('hello'), 'ERR_VDE_NOT_FOUND');
    await expectCode(vde.stat('hello'), 'ERR_VDE_NOT_FOUND');
    await checked(vde);
    await vde.close();
  });

  it('overwrites keep created, change modified and etag, and free the old blocks', async () => {
    const { vde } = await memoryEngine();
    const a = await vde.store('k', bytes(100_000, 1));
    await new Promise((r) => setTimeout(r, 5));
    const b = await vde.store('k', bytes(100_000, 2));
    expect(b.created.getTime()).toBe(a.created.getTime());
    expect(b.modified.getTime()).toBeGreaterThanOrEqual(a.modified.getTime());
    expect(b.etag).not.toBe(a.etag);
    expectBytes(await vde.retrieve('k'), bytes(100_000, 2));
    const used = (): number => vde.stats().containerBytes / 4096 - vde.stats().freeBlocks;
    await vde.checkpoint();
    await vde.checkpoint();
    const used1 = used();
    for (let i = 0; i < 20; i++) await vde.store('k', bytes(100_000, i + 3));
    await vde.checkpoint();
    await vde.checkpoint();
    // Twenty overwrites of a 25-block object leave the used space where it was (no leak).
    expect(Math.abs(used() - used1)).toBeLessThanOrEqual(2);
    await vde.delete('k');
    await vde.checkpoint();
    await vde.checkpoint();
    expect(used()).toBeLessThan(used1 - 20);
    await checked(vde);
    await vde.close();
  });

  it('accepts strings, ArrayBuffers, typed arrays, DataViews, async iterables, Readables and ReadableStreams', async () => {
    const { vde } = await memoryEngine();
    const data = bytes(300_000, 7);
    await vde.store('u8', data);
    await vde.store('ab', data.slice().buffer);
    await vde.store('str', 'ünïcødé');
    await vde.store('iter', (async function* () {
      for (let i = 0; i < data.length; i += 7777) yield data.subarray(i, i + 7777);
    })());
    await vde.store('readable', Readable.from([Buffer.from(data.subarray(0, 1000)), Buffer.from(data.subarray(1000))]));
    await vde.store('web', new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(data.subarray(0, 5));
        c.enqueue(data.subarray(5));
        c.close();
      },
    }));
    await vde.store('small-stream', Readable.from([Buffer.from('abc')]));
    // Any typed array or DataView, and streams of ArrayBuffers or strings, as the README says: the published types
    // accept them too (this file is type-checked; they were rejected with TS2322 before).
    await vde.store('dv', new DataView(data.buffer, data.byteOffset, data.byteLength));
    await vde.store('u32', new Uint32Array(data.slice(0, 4000).buffer));
    await vde.store('ab-iter', (async function* () {
      yield data.slice(0, 10).buffer;
      yield data.subarray(10);
    })());
    await vde.store('web-text', new ReadableStream<string>({
      start(c) {
        c.enqueue('ünï');
        c.enqueue('cødé');
        c.close();
      },
    }));
    await vde.batch([
      { type: 'put', key: 'batch-dv', data: new DataView(data.buffer, 0, 100) },
      { type: 'put', key: 'batch-f64', data: new Float64Array(data.slice(0, 800).buffer) },
    ]);
    for (const k of ['u8', 'ab', 'iter', 'readable', 'web', 'dv', 'ab-iter']) expectBytes(await vde.retrieve(k), data);
    expectBytes(await vde.retrieve('u32'), data.subarray(0, 4000));
    expectBytes(await vde.retrieve('batch-dv'), data.subarray(0, 100));
    expectBytes(await vde.retrieve('batch-f64'), data.subarray(0, 800));
    expect(new TextDecoder().decode(await vde.retrieve('web-text'))).toBe('ünïcødé');
    expect(new TextDecoder().decode(await vde.retrieve('str'))).toBe('ünïcødé');
    expect(new TextDecoder().decode(await vde.retrieve('small-stream'))).toBe('abc');
    const chunks: Buffer[] = [];
    for await (const c of vde.createReadStream('iter')) chunks.push(c as Buffer);
    expectBytes(new Uint8Array(Buffer.concat(chunks)), data);
    await checked(vde);
    await vde.close();
  });

  it('lists in UTF-8 byte order with prefix, start/end, limit and reverse', async () => {
    const { vde } = await memoryEngine();
    const keys = ['a', 'a/1', 'a/2', 'a/10', 'b', 'b/x', 'z', 'é', '日本', '\u{1F600}', 'A'];
    for (const k of keys) await vde.store(k, k);
    const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const all = (await collect(vde.list())).map((o) => o.key);
    expect(all).toEqual(sorted);
    expect((await collect(vde.list({ reverse: true }))).map((o) => o.key)).toEqual([...sorted].reverse());
    expect((await collect(vde.list({ prefix: 'a/' }))).map((o) => o.key)).toEqual(['a/1', 'a/10', 'a/2']);
    expect((await collect(vde.list({ start: 'a/2', end: 'z' }))).map((o) => o.key)).toEqual(['a/2', 'b', 'b/x']);
    expect((await collect(vde.list({ limit: 3 }))).map((o) => o.key)).toEqual(sorted.slice(0, 3));
    expect((await collect(vde.list({ prefix: 'a', reverse: true, limit: 2 }))).map((o) => o.key)).toEqual(['a/2', 'a/10']);
    // Pagination: resume after the last key of a page.
    const pages: string[] = [];
    let start: string | undefined;
    for (;;) {
      const page = await collect(vde.list({ limit: 4, ...(start === undefined ? {} : { start }) }));
      const fresh = page.map((o) => o.key).filter((k) => k !== pages[pages.length - 1]);
      if (fresh.length === 0) break;
      pages.push(...fresh);
      start = page[page.length - 1]!.key;
    }
    expect(pages).toEqual(sorted);
    await checked(vde);
    await vde.close();
  });

  it('round-trips metadata, including large metadata stored out of line', async () => {
    const { vde } = await memoryEngine({}, 512);
    const big = { blob: 'x'.repeat(60_000), 'ключ': 'значение' };
    await vde.store('m', 'data', { metadata: big });
    expect((await vde.stat('m')).metadata).toEqual(big);
    expect(new TextDecoder().decode(await vde.retrieve('m'))).toBe('data');
    await vde.store('m', 'data2', { metadata: { a: 'b' } });
    expect((await vde.stat('m')).metadata).toEqual({ a: 'b' });
    await checked(vde);
    await vde.close();
  });

  it('batch applies all operations atomically', async () => {
    const { vde } = await memoryEngine();
    await vde.store('gone', 'x');
    await vde.batch([
      { type: 'put', key: 'p1', data: 'one' },
      { type: 'put', key: 'p2', data: bytes(50_000), metadata: { m: '1' } },
      { type: 'del', key: 'gone' },
    ]);
    expect(await vde.exists('gone')).toBe(false);
    expectBytes(await vde.retrieve('p2'), bytes(50_000));
    await expectCode(vde.batch([{ type: 'put', key: 'ok', data: 'x' }, { type: 'put', key: '', data: 'y' }]), 'ERR_VDE_INVALID_KEY');
    expect(await vde.exists('ok')).toBe(false);
    await checked(vde);
    await vde.close();
  });
});

describe('batch: the one-pass encoding of small puts and the general path agree', () => {
  it('gives the same objects, metadata and creation times as single stores, live and after log replay (model)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.array(
            fc.record({
              del: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
              key: fc.integer({ min: 0, max: 40 }),
              size: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constantFrom(1024, 5000)),
              meta: fc.boolean(),
            }),
            { minLength: 1, maxLength: 30 },
          ),
          { minLength: 1, maxLength: 8 },
        ),
        async (batches) => {
          const device = new MemoryBlockDevice({ blockSize: 4096 });
          const vde = await VirtualDiskEngine.open(device, SMALL);
          const model = new Map<string, { data: Uint8Array; meta: Record<string, string>; created: number }>();
          let seed = 1;
          for (const ops of batches) {
            const before = new Map(model);
            const now = Date.now();
            const batch = ops.map((o) => {
              const key = `k${o.key}`;
              if (o.del) return { type: 'del' as const, key };
              const data = bytes(o.size, seed++);
              return o.meta ? { type: 'put' as const, key, data, metadata: { seed: String(seed) } } : { type: 'put' as const, key, data };
            });
            await vde.batch(batch);
            for (const op of batch) {
              if (op.type === 'del') model.delete(op.key);
              else model.set(op.key, { data: op.data, meta: 'metadata' in op ? op.metadata : {}, created: before.get(op.key)?.created ?? now });
            }
          }
          const expectModel = async (e: VirtualDiskEngine, live: boolean): Promise<void> => {
            expect((await collect(e.list())).map((i) => i.key)).toEqual([...model.keys()].sort());
            for (const [key, v] of model) {
              expectBytes(await e.retrieve(key), v.data);
              const st = await e.stat(key);
              expect(st.metadata).toEqual(v.meta);
              // An overwrite keeps the first version's creation time (a fresh key gets the batch's time).
              if (live) expect(Math.abs(st.created.getTime() - v.created)).toBeLessThan(2_000);
            }
          };
          await expectModel(vde, true);
          // Recovery replays the batch records (no checkpoint since the first store of the run: the image is taken
          // before close).
          const crashed = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 4096), SMALL);
          await expectModel(crashed, false);
          await checked(crashed);
          await crashed.close();
          await checked(vde);
          await vde.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('an overwrite in a batch of small puts keeps the creation time of the version it replaces', async () => {
    const { vde } = await memoryEngine();
    await vde.store('a', 'first');
    const created = (await vde.stat('a')).created.getTime();
    await new Promise((r) => setTimeout(r, 5));
    await vde.batch([
      { type: 'put', key: 'a', data: 'second' },
      { type: 'put', key: 'b', data: 'new' },
    ]);
    const a = await vde.stat('a');
    expect(a.created.getTime()).toBe(created);
    expect(a.modified.getTime()).toBeGreaterThan(created);
    expect(new TextDecoder().decode(await vde.retrieve('a'))).toBe('second');
    await checked(vde);
    await vde.close();
  });
});

describe('sizes and block sizes', () => {
  for (const blockSize of [512, 1024, 4096, 16384, 65536]) {
    it(`round-trips 0 B … 1 MiB objects with ${blockSize}-byte blocks, across reopen`, async () => {
      const device = new MemoryBlockDevice({ blockSize });
      const sizes = [0, 1, 100, blockSize / 4, blockSize - 1, blockSize, blockSize + 1, 3 * blockSize, 100_000, 1 << 20];
      let vde = await VirtualDiskEngine.open(device, { ...SMALL, blockSize });
      for (const [i, n] of sizes.entries()) await vde.store(`k${i}`, bytes(n, i + 1));
      await vde.close();
      vde = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), blockSize), SMALL);
      for (const [i, n] of sizes.entries()) expectBytes(await vde.retrieve(`k${i}`), bytes(n, i + 1));
      await checked(vde);
      await vde.close();
    });
  }

  it('stores and streams a 64 MiB object in a file container', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'big.vde');
    let vde = await VirtualDiskEngine.open(path);
    const big = bytes(64 << 20, 9);
    await vde.store('big', big);
    await vde.close();
    vde = await VirtualDiskEngine.open(path);
    expect(Buffer.compare(Buffer.from(await vde.retrieve('big')), Buffer.from(big))).toBe(0);
    let n = 0;
    for await (const c of vde.createReadStream('big')) n += (c as Buffer).byteLength;
    expect(n).toBe(big.byteLength);
    await checked(vde);
    await vde.close();
  });
});

describe('files, reopen and the writer lock', () => {
  it('survives close and reopen with every object, metadata and snapshot', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'c.vde');
    let vde = await VirtualDiskEngine.open(path);
    for (let i = 0; i < 200; i++) await vde.store(`obj/${i}`, bytes(i * 37, i), { metadata: { i: String(i) } });
    await vde.createSnapshot('s1');
    await vde.delete('obj/5');
    await vde.close();
    vde = await VirtualDiskEngine.open(path);
    expect(vde.stats().objects).toBe(199);
    expect(await vde.exists('obj/5')).toBe(false);
    expect((await vde.stat('obj/7')).metadata).toEqual({ i: '7' });
    expect(vde.listSnapshots().map((s) => s.name)).toEqual(['s1']);
    await using snap = await vde.openSnapshot('s1');
    expectBytes(await snap.retrieve('obj/5'), bytes(5 * 37, 5));
    await checked(vde);
    await vde.close();
  });

  it('a second open of the same container fails with ERR_VDE_LOCKED and leaves it intact', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'l.vde');
    const vde = await VirtualDiskEngine.open(path);
    await vde.store('k', 'v');
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_LOCKED');
    expect(new TextDecoder().decode(await vde.retrieve('k'))).toBe('v');
    await vde.close();
    const again = await VirtualDiskEngine.open(path);
    expect(await again.exists('k')).toBe(true);
    await again.close();
  });

  it('read-only opens read, refuse writes, and need no lock', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'ro.vde');
    const vde = await VirtualDiskEngine.open(path);
    await vde.store('k', 'v');
    const ro = await VirtualDiskEngine.open(path, { readOnly: true });
    expect(new TextDecoder().decode(await ro.retrieve('k'))).toBe('v');
    await expectCode(ro.store('x', 'y'), 'ERR_VDE_READ_ONLY');
    await expectCode(ro.delete('k'), 'ERR_VDE_READ_ONLY');
    await ro.close();
    await vde.close();
  });

  it('missing files, non-containers and newer versions get typed errors', async () => {
    await using tmp = await tempDir();
    await expectCode(VirtualDiskEngine.open(join(tmp.dir, 'none.vde'), { create: false }), 'ERR_VDE_NOT_FOUND');
    const { writeFile, readFile } = await import('node:fs/promises');
    await writeFile(join(tmp.dir, 'text.vde'), 'this is not a container'.repeat(100));
    await expectCode(VirtualDiskEngine.open(join(tmp.dir, 'text.vde')), 'ERR_VDE_FORMAT');
    const path = join(tmp.dir, 'v.vde');
    const vde = await VirtualDiskEngine.open(path);
    await vde.close();
    const buf = await readFile(path);
    // Bump the format version in both superblocks and fix their checksums.
    const { crc32 } = await import('@vde/block-device');
    for (const off of [0, 4096]) {
      if (buf.readUInt32LE(off) === 0) continue;
      buf.writeUInt32LE(99, off + 8);
      buf.writeUInt32LE(crc32(buf.subarray(off, off + 124)), off + 124);
    }
    await writeFile(path, buf);
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_FORMAT');
  });
});

describe('bad input gets typed errors', () => {
  it('keys', async () => {
    const { vde } = await memoryEngine();
    await expectCode(vde.store('', 'x'), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.store('a'.repeat(1025), 'x'), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.store('\uD800', 'x'), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.store(42 as unknown as string, 'x'), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.retrieve(''), 'ERR_VDE_INVALID_KEY');
    await vde.store('é'.repeat(512), 'x'); // 1,024 UTF-8 bytes: allowed
    await expectCode(vde.store('é'.repeat(513), 'x'), 'ERR_VDE_INVALID_KEY');
    await checked(vde);
    await vde.close();
  });

  it('data, metadata, options and list options', async () => {
    const { vde } = await memoryEngine();
    await expectCode(vde.store('k', 42 as unknown as string), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(vde.store('k', null as unknown as string), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(vde.store('k', 'x', { metadata: { a: 1 as unknown as string } }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(vde.store('k', 'x', { metadata: { a: 'x'.repeat(70_000) } }), 'ERR_VDE_TOO_LARGE');
    await expectCode(vde.store('k', (async function* () {
      yield 5 as unknown as Uint8Array;
    })()), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(() => vde.list({ limit: -1 }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(vde.batch([{ type: 'nope', key: 'k' } as never]), 'ERR_VDE_INVALID_ARGUMENT');
    expect(await vde.exists('k')).toBe(false);
    await checked(vde);
    await vde.close();
    const dev = () => new MemoryBlockDevice({ blockSize: 4096 });
    await expectCode(VirtualDiskEngine.open(dev(), { blockSize: 3000 }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(dev(), { stripeCount: 3 }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(dev(), { durability: 'fast' as never }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(dev(), { bogus: 1 } as never), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(dev(), { checkpointWalUtilizationPercent: 0 }), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(dev(), { inlineCommits: 'yes' as never }), 'ERR_VDE_INVALID_ARGUMENT');
  });

  it('an aborted signal rejects with ERR_VDE_ABORTED and stores nothing', async () => {
    const { vde } = await memoryEngine();
    const ac = new AbortController();
    ac.abort();
    await expectCode(vde.store('k', 'x', { signal: ac.signal }), 'ERR_VDE_ABORTED');
    const ac2 = new AbortController();
    const slow = (async function* () {
      yield bytes(10_000);
      ac2.abort();
      yield bytes(10_000);
    })();
    await expectCode(vde.store('k2', slow, { signal: ac2.signal }), 'ERR_VDE_ABORTED');
    expect(await vde.exists('k')).toBe(false);
    expect(await vde.exists('k2')).toBe(false);
    await checked(vde);
    await vde.close();
  });

  it('closed engines refuse every call with ERR_VDE_CLOSED; close is idempotent', async () => {
    const { vde } = await memoryEngine();
    await vde.close();
    await vde.close();
    await expectCode(vde.store('k', 'x'), 'ERR_VDE_CLOSED');
    await expectCode(vde.retrieve('k'), 'ERR_VDE_CLOSED');
    await expectCode(() => vde.stats(), 'ERR_VDE_CLOSED');
    expect(new VdeError('ERR_VDE_CLOSED', 'x')).toBeInstanceOf(Error);
  });

  it('a full container is ERR_VDE_FULL and loses nothing already stored', async () => {
    const { vde } = await memoryEngine({ maxSizeBytes: 2 << 20, walSizeBytes: 256 * 1024 });
    const kept = await storeUntilFull(vde, 100_000);
    for (const i of kept) expectBytes(await vde.retrieve(`k${i}`), bytes(100_000, i));
    await vde.delete(`k${kept[0]!}`);
    await vde.checkpoint();
    await vde.checkpoint();
    await vde.store('after', bytes(50_000));
    await checked(vde);
    await vde.close();
  });
});

describe('growth under a burst of large stores', () => {
  it('grows at most twice for a burst that asks in one turn, and at the limit fails the rest with ERR_VDE_FULL, losing nothing', async () => {
    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const grows: number[] = [];
    const grow = device.grow.bind(device);
    device.grow = (blockCount: number) => (grows.push(blockCount), grow(blockCount));
    const vde = await VirtualDiskEngine.open(device, { walSizeBytes: 256 * 1024, maxSizeBytes: 24 << 20 });
    const before = grows.length;
    // 40 stores of 256 KiB (10 MiB) at once: more than one 25% step of the initial container.
    const first = await Promise.all(Array.from({ length: 40 }, (_, i) => vde.store(`a${i}`, bytes(256 * 1024, i))));
    expect(first).toHaveLength(40);
    // One growth for the reserve the first stores ask for, one for the data of all 40 (25% steps took 6).
    expect(grows.length - before).toBeLessThanOrEqual(2);
    // Past maxSizeBytes: some fit, the others fail with ERR_VDE_FULL; every acknowledged one reads back.
    const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => vde.store(`b${i}`, bytes(256 * 1024, 100 + i))));
    const failed = results.filter((r) => r.status === 'rejected');
    expect(failed.length).toBeGreaterThan(0);
    for (const r of failed) expect((r.reason as { code?: string }).code).toBe('ERR_VDE_FULL');
    expect(device.blockCount * 4096).toBeLessThanOrEqual(24 << 20);
    for (let i = 0; i < 40; i++) expectBytes(await vde.retrieve(`a${i}`), bytes(256 * 1024, i));
    for (let i = 0; i < 64; i++) {
      if (results[i]!.status === 'fulfilled') expectBytes(await vde.retrieve(`b${i}`), bytes(256 * 1024, 100 + i));
      else expect(await vde.exists(`b${i}`)).toBe(false);
    }
    await checked(vde);
    await vde.close();
  });
});

describe('snapshots, health, scrub', () => {
  it('an in-memory snapshot sees the state when it was taken and holds its blocks', async () => {
    const { vde } = await memoryEngine();
    await vde.store('a', bytes(20_000, 1));
    await vde.store('b', 'b1');
    const snap = await vde.snapshot();
    await vde.store('a', bytes(20_000, 2));
    await vde.delete('b');
    await vde.store('c', 'c');
    for (let i = 0; i < 5; i++) {
      await vde.store(`fill${i}`, bytes(20_000, 10 + i));
      await vde.checkpoint();
    }
    expectBytes(await snap.retrieve('a'), bytes(20_000, 1));
    expect(new TextDecoder().decode(await snap.retrieve('b'))).toBe('b1');
    expect(await snap.exists('c')).toBe(false);
    expect((await collect(snap.list())).map((o) => o.key)).toEqual(['a', 'b']);
    expectBytes(await vde.retrieve('a'), bytes(20_000, 2));
    await snap.close();
    await expectCode(snap.retrieve('a'), 'ERR_VDE_CLOSED');
    await checked(vde);
    await vde.close();
  });

  it('named snapshots: create, list, open, delete; duplicates and unknown names are typed errors', async () => {
    const { vde } = await memoryEngine();
    await vde.store('k', 'v1');
    const info = await vde.createSnapshot('before');
    expect(info).toMatchObject({ name: 'before', objectCount: 1 });
    await expectCode(vde.createSnapshot('before'), 'ERR_VDE_EXISTS');
    await expectCode(vde.openSnapshot('nope'), 'ERR_VDE_NOT_FOUND');
    await vde.store('k', 'v2');
    {
      await using s = await vde.openSnapshot('before');
      expect(new TextDecoder().decode(await s.retrieve('k'))).toBe('v1');
    }
    expect(await vde.deleteSnapshot('before')).toBe(true);
    expect(await vde.deleteSnapshot('before')).toBe(false);
    expect(vde.listSnapshots()).toEqual([]);
    await checked(vde);
    await vde.close();
  });

  it('health reports status, space, objects and log fill', async () => {
    const { vde } = await memoryEngine();
    await vde.store('a', bytes(1000));
    const h = await vde.health();
    expect(h.objectCount).toBe(1);
    expect(h.usedBytes).toBeGreaterThan(0);
    expect(['healthy', 'degraded', 'critical']).toContain(h.status);
    expect(h.walFillPercent).toBeGreaterThanOrEqual(0);
    await vde.close();
  });

  it('scrub under concurrent writers verifies a point-in-time image and reports no false problem', async () => {
    // A file container: its reads go through the thread pool, so the writers really run during the scrub.
    await using tmp = await tempDir();
    const vde = await VirtualDiskEngine.open(join(tmp.dir, 'c.vde'), { walSizeBytes: 256 * 1024 });
    await Promise.all(Array.from({ length: 300 }, (_, i) => vde.store(`pre/${i}`, bytes(200 + (i % 7) * 900, i))));
    let stop = false;
    let stored = 0;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        await vde.store(`w${w}/${i % 50}`, bytes(100 + (i % 5) * 2000, w * 1000 + i));
        stored++;
      }
    });
    try {
      const before = stored;
      for (let round = 0; round < 3; round++) {
        const report = await vde.scrub();
        expect(report.problems).toEqual([]);
        expect(report.ok).toBe(true);
        expect(report.indexChecked).toBe(true);
        expect(report.objectsChecked).toBeGreaterThanOrEqual(300);
      }
      expect(stored).toBeGreaterThan(before); // the writers went on during the scrubs
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    await checked(vde);
    await vde.close();
  });

  it('scrub reads everything, reports progress, and finds a damaged object', async () => {
    const { device, vde } = await memoryEngine();
    for (let i = 0; i < 20; i++) await vde.store(`k${i}`, bytes(10_000, i));
    const progress: number[] = [];
    const clean = await vde.scrub({ onProgress: (p) => progress.push(p.objectsChecked) });
    expect(clean.ok).toBe(true);
    expect(clean.objectsChecked).toBe(20);
    expect(clean.bytesChecked).toBe(200_000);
    expect(progress[progress.length - 1]).toBe(20);
    // Damage one data block of k3, found through its first bytes.
    const image = device.image();
    const needle = Buffer.from(bytes(10_000, 3).subarray(0, 64));
    const at = Buffer.from(image).indexOf(needle);
    expect(at).toBeGreaterThan(0);
    const block = Math.floor(at / 4096);
    const data = await device.read(block, 1);
    data[at % 4096] = data[at % 4096]! ^ (0xff);
    await device.write(block, data);
    const bad = await vde.scrub();
    expect(bad.ok).toBe(false);
    expect(bad.problems).toEqual([expect.objectContaining({ key: 'k3', code: 'ERR_VDE_CORRUPT' })]);
    await expectCode(vde.retrieve('k3'), 'ERR_VDE_CORRUPT');
    expect((await vde.health()).checksumErrors).toBeGreaterThan(0);
    await vde.close();
  });
});

describe('I/O failures from a caller-supplied device', () => {
  it('scrub on a failing device reports the failure and still checks what it can read', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, SMALL);
    for (let i = 0; i < 10; i++) await vde.store(`k${i}`, bytes(6000, i));
    faulty.failAfter(1, 'EIO', { op: 'sync' }); // the checkpoint for its point-in-time image fails
    const report = await vde.scrub();
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatchObject({ code: 'ERR_VDE_IO' });
    expect(report.problems).toHaveLength(1);
    expect(report.objectsChecked).toBe(10);
    expect(report.indexChecked).toBe(true);
    faulty.clearFaults();
    await vde.close().catch(() => undefined);
  });

  it('a checkpoint that fails after freeing the old checkpoint\'s blocks lets no store write over them (they are still durable)', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    for (const seed of [3, 4]) {
      const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
      // Holds syncs while `hold` is set, so that stores can queue behind the checkpoint at the gate.
      let hold = false;
      let held: (() => void) | undefined;
      const heldSync = new Promise<void>((r) => (held = r));
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const device: BlockDevice = {
        get blockSize() {
          return faulty.blockSize;
        },
        get blockCount() {
          return faulty.blockCount;
        },
        readOnly: false,
        read: (b, c) => faulty.read(b, c),
        readInto: (b, buf) => faulty.readInto(b, buf),
        write: (b, d) => faulty.write(b, d),
        grow: (n) => faulty.grow(n),
        close: () => faulty.close(),
        sync: async () => {
          if (hold) {
            held?.();
            await released;
          }
          return faulty.sync();
        },
      };
      const vde = await VirtualDiskEngine.open(device, SMALL);
      // Versions replaced since the durable checkpoint: the next checkpoint frees their blocks (and the old
      // checkpoint's own) before it writes its superblock, so that its bitmap has them free. Until that superblock
      // is durable, the durable checkpoint and the log records after it still reference them.
      for (let i = 0; i < 8; i++) await vde.store(`k${i}`, bytes(9000, i));
      for (let i = 0; i < 8; i++) await vde.store(`k${i}`, bytes(9000, 100 + i));
      hold = true;
      const checkpoint = vde.checkpoint().catch((err: unknown) => err);
      await heldSync; // the checkpoint's meta blob is written and its sync is held
      const stores = Array.from({ length: 8 }, (_, i) => vde.store(`n${i}`, bytes(20_000, 200 + i)).catch((err: unknown) => err));
      await new Promise((r) => setImmediate(r));
      // The disk dies: that sync fails, and every one after it.
      faulty.failAfter(1, 'EIO', { op: 'sync', sticky: true });
      hold = false;
      release();
      expect(await checkpoint).toMatchObject({ code: 'ERR_VDE_IO' });
      for (const r of await Promise.all(stores)) expect(r).toMatchObject({ code: 'ERR_VDE_POISONED' });
      faulty.clearFaults();
      await vde.close().catch(() => undefined);
      // A crash now keeps (keep-all) or keeps some of (random) the writes issued since the last sync: the durable
      // checkpoint and the log after it must still be intact.
      const reopened = await VirtualDiskEngine.open(faulty.powerCut({ seed, mode: seed === 3 ? 'keep-all' : 'random' }), SMALL);
      for (let i = 0; i < 8; i++) expectBytes(await reopened.retrieve(`k${i}`), bytes(9000, 100 + i));
      await checked(reopened);
      await reopened.close();
    }
  });

  it('raw Node errors become typed VdeErrors, and a failed sync refuses further writes until reopen', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, SMALL);
    await vde.store('kept', 'acknowledged');
    await vde.store('big', bytes(100_000, 5));
    faulty.failAfter(1, 'EIO', { op: 'sync' });
    await expectCode(vde.store('k', 'x'), 'ERR_VDE_IO');
    await expectCode(vde.store('k2', 'y'), 'ERR_VDE_POISONED');
    expect(new TextDecoder().decode(await vde.retrieve('kept'))).toBe('acknowledged');
    faulty.failAfter(1, 'ENOSPC', { op: 'read', sticky: true });
    await expectCode(vde.retrieve('big'), 'ERR_VDE_FULL');
    faulty.clearFaults();
    await vde.close().catch(() => undefined);
    const reopened = await VirtualDiskEngine.open(faulty.powerCut({ seed: 1, mode: 'keep-all' }), SMALL);
    expect(new TextDecoder().decode(await reopened.retrieve('kept'))).toBe('acknowledged');
    expectBytes(await reopened.retrieve('big'), bytes(100_000, 5));
    await checked(reopened);
    await reopened.close();
  });
});
