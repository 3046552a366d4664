// The promises, sentence by sentence, as a user who knows only the public API would test them (API review).
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { encodeCreationMarker } from '../src/superblock.js';
import { bytes, checked, collect, expectBytes, expectCode, storeUntilFull, tempDir } from './helpers.js';

describe('maxSizeBytes without walSizeBytes', () => {
  it('a limit below the default 32 MiB log opens, grows to the limit, then is ERR_VDE_FULL losing nothing', async () => {
    // Every maxSizeBytes below about 33 MiB failed open with ERR_VDE_FULL ("too small for a 33554432-byte log").
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'limited.vde');
    const vde = await VirtualDiskEngine.open(path, { maxSizeBytes: 4 << 20 });
    const kept = await storeUntilFull(vde, 100_000);
    expect(kept.length).toBeGreaterThan(10);
    expect(vde.stats().containerBytes).toBeLessThanOrEqual(4 << 20);
    for (const i of kept) expectBytes(await vde.retrieve(`k${i}`), bytes(100_000, i));
    await checked(vde);
    await vde.close();
    const again = await VirtualDiskEngine.open(path, { maxSizeBytes: 4 << 20 });
    for (const i of kept) expectBytes(await again.retrieve(`k${i}`), bytes(100_000, i));
    await checked(again);
    await again.close();
  });

  it.each([1, 2, 8, 16, 32])('a %i MiB limit opens (the log is an eighth of it)', async (mib) => {
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { maxSizeBytes: mib << 20 });
    expect(vde.stats().containerBytes).toBeLessThanOrEqual(mib << 20);
    await checked(vde);
    await vde.close();
  });

  it('a walSizeBytes given with the limit is kept: too large for it is still ERR_VDE_FULL at open', async () => {
    await expectCode(
      VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { maxSizeBytes: 4 << 20, walSizeBytes: 8 << 20 }),
      'ERR_VDE_FULL',
    );
  });
});

describe('store data kinds', () => {
  it('a locked ReadableStream is ERR_VDE_INVALID_ARGUMENT, a source whose iterator cannot be made is ERR_VDE_SOURCE', async () => {
    // Both threw the raw TypeError of the stream or the iterable (no code, not a VdeError).
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    await vde.store('k', 'old');
    const locked = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array([1, 2, 3]));
        c.close();
      },
    });
    locked.getReader();
    await expectCode(vde.store('k', locked), 'ERR_VDE_INVALID_ARGUMENT');
    const broken = {
      [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
        throw new TypeError('not today');
      },
    };
    await expectCode(vde.store('k', broken), 'ERR_VDE_SOURCE');
    expect(Buffer.from(await vde.retrieve('k')).toString()).toBe('old');
    await checked(vde);
    await vde.close();
  });
});

describe('named snapshots', () => {
  it('openSnapshot and deleteSnapshot refuse names createSnapshot refuses with ERR_VDE_INVALID_ARGUMENT', async () => {
    // openSnapshot(5) was ERR_VDE_NOT_FOUND ("no snapshot named 5") and deleteSnapshot(5) resolved false.
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    await vde.store('k', 'v');
    await vde.createSnapshot('s');
    for (const bad of [5, null, undefined, '', 'x'.repeat(256), '\uD800'] as unknown as string[]) {
      await expectCode(vde.createSnapshot(bad), 'ERR_VDE_INVALID_ARGUMENT');
      await expectCode(vde.openSnapshot(bad), 'ERR_VDE_INVALID_ARGUMENT');
      await expectCode(vde.deleteSnapshot(bad), 'ERR_VDE_INVALID_ARGUMENT');
    }
    await expectCode(vde.openSnapshot('missing'), 'ERR_VDE_NOT_FOUND');
    expect(await vde.deleteSnapshot('missing')).toBe(false);
    const snap = await vde.openSnapshot('s');
    expect(Buffer.from(await snap.retrieve('k')).toString()).toBe('v');
    await snap.close();
    expect(await vde.deleteSnapshot('s')).toBe(true);
    expect(vde.listSnapshots()).toEqual([]);
    await checked(vde);
    await vde.close();
  });
});

describe('snapshot() on a read-only open', () => {
  it('is a point-in-time view like any other (it was ERR_VDE_READ_ONLY) and changes nothing in the file', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'ro.vde');
    const vde = await VirtualDiskEngine.open(path);
    await vde.store('a', 'one', { metadata: { m: 'x' } });
    await vde.store('big', bytes(300_000, 3));
    await vde.close();
    const before = await readFile(path);
    const mtime = (await stat(path)).mtimeMs;

    const ro = await VirtualDiskEngine.open(path, { readOnly: true });
    {
      await using snap = await ro.snapshot();
      expect(Buffer.from(await snap.retrieve('a')).toString()).toBe('one');
      expect((await snap.stat('a')).metadata).toEqual({ m: 'x' });
      expect(await snap.exists('missing')).toBe(false);
      expect((await collect(snap.list())).map((o) => o.key)).toEqual(['a', 'big']);
      expectBytes(Buffer.concat(await collect(snap.createReadStream('big'))), bytes(300_000, 3));
      await expectCode(snap.retrieve('missing'), 'ERR_VDE_NOT_FOUND');
    }
    const closed = await ro.snapshot();
    await closed.close();
    await expectCode(closed.retrieve('a'), 'ERR_VDE_CLOSED');
    const open = await ro.snapshot();
    await ro.close();
    await expectCode(open.retrieve('a'), 'ERR_VDE_CLOSED');
    await expectCode(ro.snapshot(), 'ERR_VDE_CLOSED');
    expect((await readFile(path)).equals(before)).toBe(true);
    expect((await stat(path)).mtimeMs).toBe(mtime);
  });

  it('sees the stores a read-only open replays from the log', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty);
    await vde.checkpoint();
    for (let i = 0; i < 50; i++) await vde.store(`k${i}`, bytes(i * 100, i));
    const image = faulty.powerCut({ seed: 1, mode: 'keep-all' }).image();
    const ro = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096, { readOnly: true }), { readOnly: true });
    const snap = await ro.snapshot();
    expect((await collect(snap.list())).length).toBe(50);
    for (let i = 0; i < 50; i += 7) expectBytes(await snap.retrieve(`k${i}`), bytes(i * 100, i));
    await snap.close();
    await ro.close();
  });
});

describe('retrieve options', () => {
  it('an unknown or bad option is ERR_VDE_INVALID_ARGUMENT whatever the object and the cache', async () => {
    // retrieve(key, { sigal }) resolved for a small object answered from memory and was refused for a large one.
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    await vde.store('small', 'v');
    await vde.store('large', bytes(100_000));
    const ac = new AbortController();
    for (const key of ['small', 'large', 'missing']) {
      await expectCode(vde.retrieve(key, { sigal: ac.signal } as never), 'ERR_VDE_INVALID_ARGUMENT');
      await expectCode(vde.retrieve(key, { signal: 'soon' } as never), 'ERR_VDE_INVALID_ARGUMENT');
      await expectCode(vde.retrieve(key, null as never), 'ERR_VDE_INVALID_ARGUMENT');
    }
    expect(Buffer.from(await vde.retrieve('small', {})).toString()).toBe('v');
    expect(Buffer.from(await vde.retrieve('small', { signal: ac.signal })).toString()).toBe('v');
    expect(Buffer.from(await vde.retrieve('small')).toString()).toBe('v');
    expectBytes(await vde.retrieve('large', {}), bytes(100_000));
    await checked(vde);
    await vde.close();
  });
});

describe('batch errors', () => {
  it('name the operation that is wrong, and apply nothing', async () => {
    // A bad key or metadata in operation 3 of a batch said only "key must not be empty"; data of a wrong kind said
    // "data must be … AsyncIterable<Uint8Array>, Readable or ReadableStream", which batch does not take.
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    await vde.store('keep', 'old');
    const good = [
      { type: 'put' as const, key: 'a', data: '1' },
      { type: 'del' as const, key: 'keep' },
      { type: 'put' as const, key: 'b', data: new Uint8Array(10_000) },
    ];
    const cases: [unknown, string, RegExp][] = [
      [{ type: 'put', key: '', data: 'x' }, 'ERR_VDE_INVALID_KEY', /^batch operation 3: key must not be empty/],
      [{ type: 'del', key: 'x'.repeat(2000) }, 'ERR_VDE_INVALID_KEY', /^batch operation 3: key is 2000 UTF-8 bytes/],
      [{ type: 'put', key: 'm', data: 'x', metadata: { n: 1 } }, 'ERR_VDE_INVALID_ARGUMENT', /^batch operation 3: metadata value of "n"/],
      [{ type: 'put', key: 'm', data: 'x', metadata: { n: 'x'.repeat(70_000) } }, 'ERR_VDE_TOO_LARGE', /^batch operation 3: metadata is/],
      [{ type: 'put', key: 'm', data: 5 }, 'ERR_VDE_INVALID_ARGUMENT', /^batch operation 3: data must be a Uint8Array, string or ArrayBuffer/],
      [{ type: 'put', key: 'm', data: new Blob(['x']).stream() }, 'ERR_VDE_INVALID_ARGUMENT', /^batch operation 3: data must be/],
      [{ type: 'del', key: 'm', data: 'x' }, 'ERR_VDE_INVALID_ARGUMENT', /^batch operation 3: unknown field "data"/],
      [{ type: 'delete', key: 'm' }, 'ERR_VDE_INVALID_ARGUMENT', /^batch operation 3: type must be 'put' or 'del'/],
    ];
    for (const [bad, code, message] of cases) {
      const err = await vde.batch([...good, bad as never]).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code, String(err?.message)).toBe(code);
      expect(err?.message).toMatch(message);
    }
    expect(await vde.exists('a')).toBe(false);
    expect(Buffer.from(await vde.retrieve('keep')).toString()).toBe('old');
    await vde.batch([...good, { type: 'put', key: 'ab', data: new TextEncoder().encode('ab').buffer }]);
    expect(Buffer.from(await vde.retrieve('ab')).toString()).toBe('ab');
    expect(await vde.exists('keep')).toBe(false);
    await checked(vde);
    await vde.close();
  });
});

describe('open(path)', () => {
  it('takes a file: URL as node:fs does (new URL(..., import.meta.url)); other URLs are ERR_VDE_INVALID_ARGUMENT', async () => {
    // A URL was "open() takes a file path or a BlockDevice".
    await using tmp = await tempDir();
    const url = pathToFileURL(join(tmp.dir, 'with space é.vde'));
    const vde = await VirtualDiskEngine.open(url);
    await vde.store('k', 'v');
    await vde.close();
    const again = await VirtualDiskEngine.open(join(tmp.dir, 'with space é.vde'), { create: false });
    expect(Buffer.from(await again.retrieve('k')).toString()).toBe('v');
    await checked(again);
    await again.close();
    await expectCode(VirtualDiskEngine.open(new URL('https://example.invalid/a.vde')), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(new URL('file:///a%2Fb.vde')), 'ERR_VDE_INVALID_ARGUMENT');
    await expectCode(VirtualDiskEngine.open(pathToFileURL(join(tmp.dir, 'missing.vde')), { create: false }), 'ERR_VDE_NOT_FOUND');
  });
});

describe('metadata', () => {
  it('a Map, Headers or URLSearchParams is ERR_VDE_INVALID_ARGUMENT (it was stored as no metadata)', async () => {
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    for (const metadata of [new Map([['a', 'b']]), new Headers({ a: 'b' }), new URLSearchParams({ a: 'b' }), new Set(['a'])]) {
      await expectCode(vde.store('k', 'v', { metadata: metadata as never }), 'ERR_VDE_INVALID_ARGUMENT');
      await expectCode(vde.batch([{ type: 'put', key: 'k', data: 'v', metadata: metadata as never }]), 'ERR_VDE_INVALID_ARGUMENT');
    }
    expect(await vde.exists('k')).toBe(false);
    const plain = Object.fromEntries(new Map([['a', 'b']]));
    const bare = Object.assign(Object.create(null) as Record<string, string>, { c: 'd' });
    expect((await vde.store('k', 'v', { metadata: plain })).metadata).toEqual({ a: 'b' });
    expect((await vde.store('k2', 'v', { metadata: bare })).metadata).toEqual({ c: 'd' });
    await checked(vde);
    await vde.close();
  });
});

describe('a crash while open() creates the container', () => {
  it('leaves a file the next writable open makes again (it was ERR_VDE_FORMAT "not a VDE container" for good)', async () => {
    // A process killed during its first open (the log is preallocated first: 100+ ms for the default 32 MiB) left a
    // file with no superblock, and every later open failed until someone deleted it by hand.
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'interrupted.vde');
    let interrupted = 0;
    for (let n = 2; n < 100; n++) {
      // The n-th write of the creation fails (write 1 is the creation marker; without it the file is not known
      // to be VDE's and stays ERR_VDE_FORMAT). What had been written is what a kill at that point leaves.
      const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
      faulty.failAfter(n, 'EIO', { op: 'write' });
      const made = await VirtualDiskEngine.open(faulty, { walSizeBytes: 256 * 1024 }).catch(() => undefined);
      if (made) {
        faulty.clearFaults();
        await made.close();
        break;
      }
      const image = faulty.powerCut({ seed: n, mode: 'keep-all' }).image();
      await writeFile(path, image);
      const complete = await VirtualDiskEngine.open(path, { readOnly: true }).catch((err: unknown) => err as Error);
      if (complete instanceof VirtualDiskEngine) {
        await complete.close(); // the write that failed came after the first superblock: a container already
        continue;
      }
      expect((complete as { code?: string }).code, String(complete)).toBe('ERR_VDE_FORMAT');
      interrupted++;
      await expectCode(VirtualDiskEngine.open(path, { create: false }), 'ERR_VDE_FORMAT');
      const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 256 * 1024 });
      await vde.store('k', bytes(5000, n));
      await checked(vde);
      await vde.close();
      const again = await VirtualDiskEngine.open(path, { create: false });
      expectBytes(await again.retrieve('k'), bytes(5000, n));
      await checked(again);
      await again.close();
      // The same through a caller's device.
      const device = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), { walSizeBytes: 256 * 1024 });
      expect(device.stats().objects).toBe(0);
      await checked(device);
      await device.close();
    }
    expect(interrupted).toBeGreaterThan(2);
  });

  it('a marker beside something that looks like superblock B is never made again (damage, not a creation)', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'damaged.vde');
    const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 256 * 1024 });
    await vde.store('k', 'v');
    await vde.checkpoint();
    await vde.close();
    const image = await readFile(path);
    image.set(encodeCreationMarker(4096), 0); // superblock A replaced by a marker
    image[4096 + 124] = image[4096 + 124]! ^ 0xff; // superblock B's checksum broken, its magic intact
    await writeFile(path, image);
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_CORRUPT');
    expect((await readFile(path)).equals(image)).toBe(true);
  });

  it('a file that is not VDE\'s is still ERR_VDE_FORMAT and left as it was', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'foreign.vde');
    const foreign = new Uint8Array(64 * 1024).fill(0x41);
    await writeFile(path, foreign);
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_FORMAT');
    await writeFile(path, new Uint8Array(64 * 1024));
    await expectCode(VirtualDiskEngine.open(path), 'ERR_VDE_FORMAT');
    expect((await readFile(path)).every((b) => b === 0)).toBe(true);
  });
});

describe('empty chunks of a stream', () => {
  it('an empty string or empty buffer chunk after data leaves a readable object (it read as ERR_VDE_CORRUPT)', async () => {
    // The store resolved, and every read of the object failed its checksum: the running CRC was reset to 0 by
    // Node's zlib.crc32 for an empty view whose buffer has no memory.
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 1 << 20 });
    const big = bytes(100_000, 9);
    const cases: [string, () => unknown, Uint8Array][] = [
      ['strings', () => Readable.from(['ab', '', 'cd']), Buffer.from('abcd')],
      [
        'empty ArrayBuffer view',
        () =>
          (async function* () {
            yield Buffer.from('ab');
            yield new Uint8Array(new ArrayBuffer(0));
            yield Buffer.from('cd');
          })(),
        Buffer.from('abcd'),
      ],
      [
        'large, then an empty string',
        () =>
          (async function* () {
            yield big;
            yield '';
          })(),
        big,
      ],
      [
        'web stream',
        () =>
          new ReadableStream<Uint8Array>({
            start(c) {
              c.enqueue(big.subarray(0, 5000));
              c.enqueue(new TextEncoder().encode(''));
              c.enqueue(big.subarray(5000));
              c.close();
            },
          }),
        big,
      ],
    ];
    for (const [name, source, expected] of cases) {
      const info = await vde.store(name, source() as ReadableStream<Uint8Array>);
      expect(info.size).toBe(expected.byteLength);
      expectBytes(await vde.retrieve(name), expected);
      expectBytes(Buffer.concat(await collect(vde.createReadStream(name))), expected);
    }
    expect((await vde.scrub()).ok).toBe(true);
    await checked(vde);
    await vde.close();
  });
});

describe('string chunks of a stream', () => {
  it('a surrogate pair split across two chunks is stored as one character (it was two U+FFFD)', async () => {
    // yield text.slice(i, i + n) cuts an emoji in two whenever one straddles n: each half was encoded alone.
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 1 << 20 });
    const small = 'a😀b€c𝄞d'.repeat(3);
    const large = 'text with 😀 emoji and 𝄞 clefs, '.repeat(40_000); // 1.3 MiB: staged and flushed in runs
    for (const [text, sizes] of [
      [small, [1, 3, 1000]],
      [large, [4095]],
    ] as const) {
      for (const n of sizes) {
        const pieces = (): string[] => {
          const out: string[] = [];
          for (let i = 0; i < text.length; i += n) out.push(text.slice(i, i + n));
          return out;
        };
        const sources = [
          (async function* () {
            yield* pieces();
          })(),
          Readable.from(pieces()),
          new ReadableStream<string>({
            start(c) {
              for (const p of pieces()) c.enqueue(p);
              c.close();
            },
          }) as unknown as ReadableStream<Uint8Array>,
        ];
        for (const source of sources) {
          const info = await vde.store('t', source);
          expect(info.size).toBe(Buffer.byteLength(text));
          expectBytes(await vde.retrieve('t'), Buffer.from(text));
        }
      }
    }
    // A high surrogate that no low half follows is a lone surrogate, encoded as TextEncoder does (U+FFFD).
    await vde.store('lone', (async function* () {
      yield 'x\uD83D';
      yield new Uint8Array([0x41]);
      yield 'y\uD83D';
    })());
    expect(Buffer.from(await vde.retrieve('lone')).toString()).toBe('x\uFFFDAy\uFFFD');
    await checked(vde);
    await vde.close();
  });
});

describe('ArrayBuffer chunks of a stream', () => {
  it('are stored as store() stores a whole ArrayBuffer (they were ERR_VDE_INVALID_ARGUMENT)', async () => {
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 1 << 20 });
    const data = bytes(50_000, 4);
    const info = await vde.store(
      'k',
      (async function* () {
        yield data.slice(0, 20_000).buffer;
        yield data.subarray(20_000);
      })() as AsyncIterable<Uint8Array>,
    );
    expect(info.size).toBe(50_000);
    expectBytes(await vde.retrieve('k'), data);
    await expectCode(
      vde.store(
        'bad',
        (async function* () {
          yield 42;
        })() as unknown as AsyncIterable<Uint8Array>,
      ),
      'ERR_VDE_INVALID_ARGUMENT',
    );
    await checked(vde);
    await vde.close();
  });
});

describe('a missing container', () => {
  it('is ERR_VDE_NOT_FOUND, and a read-only open does not tell the user to pass create: true', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'missing.vde');
    const ro = await VirtualDiskEngine.open(path, { readOnly: true }).catch((e: unknown) => e as Error & { code?: string });
    expect((ro as { code?: string }).code).toBe('ERR_VDE_NOT_FOUND');
    expect((ro as Error).message).toMatch(/a read-only open does not create one/);
    const noCreate = await VirtualDiskEngine.open(path, { create: false }).catch((e: unknown) => e as Error & { code?: string });
    expect((noCreate as { code?: string }).code).toBe('ERR_VDE_NOT_FOUND');
    expect((noCreate as Error).message).toMatch(/pass create: true/);
    await expectCode(readFile(path), 'ENOENT');
  });
});

describe('scrub with verifyChecksums: false', () => {
  it('still verifies every object (it reported a damaged object as ok)', async () => {
    await using tmp = await tempDir();
    const path = join(tmp.dir, 'scrub.vde');
    const data = bytes(300_000, 11);
    const vde = await VirtualDiskEngine.open(path, { walSizeBytes: 256 * 1024 });
    await vde.store('big', data);
    await vde.store('small', 'fine');
    await vde.close();
    const image = await readFile(path);
    const at = image.lastIndexOf(Buffer.from(data.subarray(100_000, 100_064)));
    expect(at).toBeGreaterThan(0);
    image[at + 3] = image[at + 3]! ^ 1;
    await writeFile(path, image);

    const off = await VirtualDiskEngine.open(path, { verifyChecksums: false });
    const report = await off.scrub();
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.key, p.code])).toEqual([['big', 'ERR_VDE_CORRUPT']]);
    expect(report.objectsChecked).toBe(2);
    expect((await off.health()).checksumErrors).toBeGreaterThan(0);
    await checked(off);
    await off.close();
  });
});

describe('list limit', () => {
  it('Infinity means no limit (it was ERR_VDE_INVALID_ARGUMENT); other non-integers stay refused', async () => {
    const vde = await VirtualDiskEngine.open(new MemoryBlockDevice({ blockSize: 4096 }), { walSizeBytes: 256 * 1024 });
    for (let i = 0; i < 5; i++) await vde.store(`k${i}`, `v${i}`);
    expect((await collect(vde.list({ limit: Infinity }))).map((o) => o.key)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);
    expect((await collect(vde.list({ limit: Infinity, reverse: true, prefix: 'k' }))).map((o) => o.key)).toEqual(['k4', 'k3', 'k2', 'k1', 'k0']);
    await using snap = await vde.snapshot();
    expect(await collect(snap.list({ limit: Infinity }))).toHaveLength(5);
    for (const limit of [-Infinity, NaN, 1.5, -1]) await expectCode((async () => collect(vde.list({ limit })))(), 'ERR_VDE_INVALID_ARGUMENT');
    await checked(vde);
    await vde.close();
  });
});

describe('deleteSnapshot whose checkpoint fails with ERR_VDE_FULL', () => {
  it('leaves the snapshot as it was: listed, readable, holding its blocks (it was gone while the call rejected)', async () => {
    const { FaultyBlockDevice } = await import('@vde/test-harness');
    const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 4096 }));
    const vde = await VirtualDiskEngine.open(faulty, { walSizeBytes: 256 * 1024 });
    await vde.store('k', bytes(20_000, 1));
    await vde.createSnapshot('s');
    await vde.store('k', bytes(20_000, 2));
    await vde.store('other', 'x'); // dirty index pages: the checkpoint has pages to write
    // The checkpoint's second write (after its log record: disk space claimed for its flush, before anything
    // changes) meets a full disk.
    faulty.failAfter(2, 'ENOSPC', { op: 'write' });
    await expectCode(vde.deleteSnapshot('s'), 'ERR_VDE_FULL');
    faulty.clearFaults();
    expect(vde.listSnapshots().map((s) => s.name)).toEqual(['s']);
    {
      await using snap = await vde.openSnapshot('s');
      expectBytes(await snap.retrieve('k'), bytes(20_000, 1));
    }
    await vde.checkpoint(); // the snapshot still holds the first version's blocks
    {
      await using snap = await vde.openSnapshot('s');
      expectBytes(await snap.retrieve('k'), bytes(20_000, 1));
    }
    expect(await vde.deleteSnapshot('s')).toBe(true);
    expect(vde.listSnapshots()).toEqual([]);
    expectBytes(await vde.retrieve('k'), bytes(20_000, 2));
    await checked(vde);
    await vde.close();
  });
});
