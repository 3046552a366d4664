import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { SMALL, bytes, checked, collect, expectBytes, expectCode, memoryEngine } from './helpers.js';

/**
 * Reads have a synchronous path (the key's index path is cached and the object is inline: no await, no reader
 * registration) and an async one (pages to load, extents, indirect records). Both must give the same answers, and
 * list() must never hold blocks while the caller holds its iterator.
 */
describe('read paths', () => {
  it('the cached and the loading path return the same bytes, info and errors', async () => {
    const device = new MemoryBlockDevice({ blockSize: 4096 });
    const vde = await VirtualDiskEngine.open(device, SMALL);
    const expected = new Map<string, Uint8Array>();
    for (let i = 0; i < 300; i++) {
      // inline (<= 1 KiB), extents, and a few with metadata large enough to make the record indirect
      const size = i % 3 === 0 ? 100 : i % 3 === 1 ? 1024 : 9000 + i;
      const data = bytes(size, i + 1);
      const metadata = i % 50 === 0 ? { note: 'm'.repeat(3000) } : { i: String(i) };
      await vde.store(`k/${String(i).padStart(4, '0')}`, data, { metadata });
      expected.set(`k/${String(i).padStart(4, '0')}`, data);
    }
    const warm = new Map<string, { bytes: Uint8Array; info: unknown }>();
    for (const [k, v] of expected) {
      const got = await vde.retrieve(k);
      expectBytes(got, v);
      warm.set(k, { bytes: got, info: await vde.stat(k) });
      expect(await vde.exists(k)).toBe(true);
    }
    await expectCode(vde.retrieve('k/missing'), 'ERR_VDE_NOT_FOUND');
    await expectCode(vde.stat('k/missing'), 'ERR_VDE_NOT_FOUND');
    expect(await vde.exists('k/missing')).toBe(false);
    await expectCode(vde.retrieve(''), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.retrieve('\ud800'), 'ERR_VDE_INVALID_KEY');
    await expectCode(vde.retrieve('k/0000', null as never), 'ERR_VDE_INVALID_ARGUMENT');
    // The returned bytes are the caller's: changing them changes nothing stored.
    const first = await vde.retrieve('k/0000');
    first.fill(0);
    expectBytes(await vde.retrieve('k/0000'), expected.get('k/0000')!);
    // list() builds each ObjectInfo straight from the index value (inline and extent records) or through the full
    // decode (indirect records): field for field what stat() says, in key order.
    await vde.store('k/0001-empty-meta', bytes(100, 9), { metadata: {} });
    warm.set('k/0001-empty-meta', { bytes: bytes(100, 9), info: await vde.stat('k/0001-empty-meta') });
    const listed = await collect(vde.list({ prefix: 'k/' }));
    expect(listed.map((o) => o.key)).toEqual([...warm.keys()].sort());
    for (const o of listed) expect(o).toEqual(warm.get(o.key)!.info);
    await checked(vde);
    await vde.close();

    // Reopen with the smallest cache (16 pages): nearly every read loads pages (the async path).
    const cold = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(device.image(), 4096), { ...SMALL, cacheSizeBytes: 65536 });
    for (const [k, w] of warm) {
      expectBytes(await cold.retrieve(k), w.bytes);
      expect(await cold.stat(k)).toEqual(w.info);
    }
    await expectCode(cold.retrieve('k/missing'), 'ERR_VDE_NOT_FOUND');
    await checked(cold);
    await cold.close();
    await expectCode(cold.retrieve('k/0000'), 'ERR_VDE_CLOSED');
    await expectCode(cold.stat('k/0000'), 'ERR_VDE_CLOSED');
    await expectCode(cold.exists('k/0000'), 'ERR_VDE_CLOSED');
  });

  it('keys of any Unicode round-trip through store, retrieve and list in UTF-8 byte order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 40 }),
        async (keys) => {
          const { vde } = await memoryEngine();
          for (const k of keys) await vde.store(k, k);
          const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
          expect((await collect(vde.list())).map((o) => o.key)).toEqual(sorted);
          for (const k of keys) expect(new TextDecoder().decode(await vde.retrieve(k))).toBe(k);
          await checked(vde);
          await vde.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('an abandoned list iterator holds no blocks: overwrites keep reusing the same space', async () => {
    const { vde } = await memoryEngine();
    for (let i = 0; i < 40; i++) await vde.store(`big/${i}`, bytes(64 * 1024, i));
    const it = vde.list()[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false); // taken, never finished or returned
    await vde.checkpoint();
    const before = vde.stats().containerBytes;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 40; i++) await vde.store(`big/${i}`, bytes(64 * 1024, 100 * round + i));
      await vde.checkpoint();
    }
    // Six rounds of 2.5 MiB each would need 15 MiB more if nothing were reused.
    expect(vde.stats().containerBytes).toBeLessThan(before + 6 * 1024 * 1024);
    await checked(vde);
    await vde.close();
  });

  it('list under concurrent stores and deletes: every key at most once, in order, and the untouched ones all there', async () => {
    const { vde } = await memoryEngine();
    for (let i = 0; i < 2000; i += 2) await vde.store(`s/${String(i).padStart(5, '0')}`, bytes(50, i));
    const seen: string[] = [];
    let n = 0;
    for await (const info of vde.list({ prefix: 's/' })) {
      seen.push(info.key);
      if (n++ % 50 === 0) {
        // Mutate around and ahead of the cursor between entries.
        const j = 2 * Math.floor(Math.random() * 1000);
        await vde.store(`s/${String(j + 1).padStart(5, '0')}`, bytes(50, j));
        if (j % 4 === 0) await vde.delete(`s/${String(j + 1).padStart(5, '0')}`);
      }
    }
    const sorted = [...seen].sort();
    expect(seen).toEqual(sorted);
    expect(new Set(seen).size).toBe(seen.length);
    for (let i = 0; i < 2000; i += 2) expect(seen).toContain(`s/${String(i).padStart(5, '0')}`);
    await checked(vde);
    await vde.close();
  });

  it('list stops with the typed error of a closed engine and ends cleanly on return()', async () => {
    const { vde } = await memoryEngine();
    for (let i = 0; i < 500; i++) await vde.store(`c/${String(i).padStart(4, '0')}`, 'x');
    const it = vde.list()[Symbol.asyncIterator]();
    expect(((await it.next()).value as { key: string }).key).toBe('c/0000');
    expect(await it.return?.()).toEqual({ value: undefined, done: true });
    expect((await it.next()).done).toBe(true);
    let count = 0;
    for await (const info of vde.list({ limit: 10, reverse: true })) {
      expect(info.key).toBe(`c/${String(499 - count).padStart(4, '0')}`);
      expect(info.size).toBe(1);
      count++;
    }
    expect(count).toBe(10);
    await checked(vde);
    await vde.close();
    await expectCode(() => vde.list(), 'ERR_VDE_CLOSED');
  });
});
