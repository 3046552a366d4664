import { MemoryBlockDevice, VirtualDiskEngine, type VdeError } from '@vde/engine';
import { createVdeAdapter, runCorruptionSweep, vdeRegions, type StoredObject } from '@vde/test-harness';
import { describe, expect, it } from 'vitest';

const BS = 512;
const OPTS = { walSizeBytes: 256 * 1024, cacheSizeBytes: 256 * 1024, blockSize: BS, maxSizeBytes: 2 << 20 };
const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const u64 = (b: Uint8Array, at: number): number => u32(b, at) + u32(b, at + 4) * 2 ** 32;

function value(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

/**
 * A closed container whose newest meta blob spans several runs (FORMAT.md, "Meta blob, version 2"): 1-block objects
 * up to the limit, every other one deleted, the holes' neighbours filled, then deletes under a named snapshot.
 */
async function spanningImage(): Promise<{ image: Uint8Array; expected: Map<string, StoredObject> }> {
  const dev = new MemoryBlockDevice({ blockSize: BS });
  const vde = await VirtualDiskEngine.open(dev, OPTS);
  const expected = new Map<string, StoredObject>();
  const fill = async (prefix: string, size: number, seed: number): Promise<number> => {
    for (let i = 0; ; i++) {
      const key = `${prefix}${String(i).padStart(5, '0')}`;
      const v = value(size, seed + i);
      try {
        await vde.store(key, v);
      } catch (err) {
        expect((err as VdeError).code).toBe('ERR_VDE_FULL');
        return i;
      }
      expected.set(key, { value: v, metadata: {} });
    }
  };
  const n = await fill('a', 300, 1);
  for (let i = 0; i < n; i += 2) {
    await vde.delete(`a${String(i).padStart(5, '0')}`);
    expected.delete(`a${String(i).padStart(5, '0')}`);
  }
  await vde.checkpoint();
  await fill('b', 700, 50_000);
  await vde.createSnapshot('s');
  for (const key of [...expected.keys()].filter((k) => k.startsWith('a')).slice(0, 100)) {
    await vde.delete(key);
    expected.delete(key);
  }
  await vde.check();
  await vde.close();
  return { image: dev.image(), expected };
}

describe('vdeRegions follows a version 2 meta blob over its runs', () => {
  it('labels every run of a spanning blob as meta blob, none as data or index pages', async () => {
    const { image, expected } = await spanningImage();
    const supers = [0, BS].map((at) => ({
      version: u32(image, at + 8),
      generation: u64(image, at + 16),
      start: u64(image, at + 64),
      length: u32(image, at + 76),
    }));
    const sb = supers[0]!.generation > supers[1]!.generation ? supers[0]! : supers[1]!;
    expect(sb.version).toBe(2);
    const regions = vdeRegions(image);
    const meta = regions.find((r) => r.name === 'meta blob')!.ranges;
    // The newest blob's runs (from its first run on) hold exactly its length; they are more than one range.
    const first = meta.findIndex(([s]) => s === sb.start * BS);
    expect(first).toBeGreaterThanOrEqual(0);
    let bytes = 0;
    let runs = 0;
    for (let i = first; i < meta.length && bytes < sb.length; i++, runs++) bytes += meta[i]![1] - meta[i]![0];
    expect(bytes).toBe(sb.length);
    expect(runs).toBeGreaterThan(1);
    // Each run after the first is one the blob's extent list names (bytes 12.. of the blob, 12 each).
    const listed = new Set<number>();
    const e = u32(image, sb.start * BS + 8);
    for (let i = 0; i < e && 12 + 12 * i + 12 <= BS; i++) listed.add(u64(image, sb.start * BS + 12 + 12 * i) * BS);
    for (let i = first + 1; i < first + runs && listed.size > 0; i++) {
      if (12 + 12 * (i - first - 1) + 12 <= BS) expect(listed.has(meta[i]![0])).toBe(true);
    }
    // No block of any run is labelled data or an index page.
    const metaBlocks = new Set<number>();
    for (const [s, e2] of meta) for (let b = Math.floor(s / BS); b < Math.ceil(e2 / BS); b++) metaBlocks.add(b);
    for (const r of regions.filter((x) => x.name === 'data' || x.name === 'index pages')) {
      for (const [s] of r.ranges) expect(metaBlocks.has(s / BS), `${r.name} block ${s / BS}`).toBe(false);
    }

    // Damage in any run of the spanning blob: the right data or ERR_VDE_CORRUPT, never wrong bytes.
    const report = await runCorruptionSweep({
      adapter: createVdeAdapter(OPTS),
      image,
      blockSize: BS,
      expected,
      regions: [{ name: 'meta blob', ranges: meta }],
      flips: 24,
      truncations: 2,
      seed: 7,
    });
    expect(report.problems).toEqual([]);
    expect(report.wrongReads).toBe(0);
    expect(report.detected).toBeGreaterThan(0);
  }, 300_000);
});
