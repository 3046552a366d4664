import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutcomeModel, createVdeAdapter, metadataFor, openFileDescriptors, runSoak, valueFor, valueSize } from '@vde/test-harness';
import { describe, expect, it } from 'vitest';

describe('valueFor', () => {
  it('is a pure function of (seed, key, version) with mixed sizes up to the cap', () => {
    expect(Buffer.from(valueFor(1, 'k', 2)).equals(Buffer.from(valueFor(1, 'k', 2)))).toBe(true);
    expect(Buffer.from(valueFor(1, 'k', 2)).equals(Buffer.from(valueFor(1, 'k', 3)))).toBe(false);
    const sizes = Array.from({ length: 2000 }, (_, v) => valueSize(9, 'key', v));
    expect(Math.min(...sizes)).toBe(0);
    expect(Math.max(...sizes)).toBeGreaterThan(512 * 1024);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1 << 20);
    expect(sizes.filter((s) => s <= 4096).length).toBeGreaterThan(900);
    expect(valueFor(9, 'key', 5, 100).byteLength).toBeLessThanOrEqual(100);
    expect(metadataFor('key', 5)).toEqual({ v: '5', k: 'key' });
  });
});

describe('OutcomeModel', () => {
  it('allows the last acknowledged write and anything in flight or failed after it', () => {
    const m = new OutcomeModel(new Map([['a', 1]]));
    expect(m.allowed('a')).toEqual([1]);
    const w2 = m.invoke('a', 2);
    expect(m.allowed('a')).toEqual([1, 2]); // in flight
    m.ack(w2);
    expect(m.allowed('a')).toEqual([2]);
    const d = m.invoke('a', null);
    const w3 = m.invoke('a', 3); // concurrent with the delete
    m.ack(w3);
    m.ack(d);
    expect(m.allowed('a').sort()).toEqual([3, null].sort()); // either order of the two
    const w4 = m.invoke('a', 4);
    m.fail(w4);
    expect(m.allowed('a')).toContain(4); // a failed write may have landed…
    const w5 = m.invoke('a', 5);
    m.ack(w5);
    expect(m.allowed('a')).toEqual([5]); // …until an acknowledged write issued after it
    expect(m.written('a').sort()).toEqual([1, 2, 3, 4, 5, null].sort());
    expect(m.acknowledged).toBe(4);
    expect(() => m.ack(w5)).toThrow(RangeError);
  });

  it('a key never acknowledged may keep its initial state', () => {
    const m = new OutcomeModel();
    m.invoke('b', 7);
    expect(m.allowed('b').sort()).toEqual([7, null].sort());
    expect(m.hasAck('b')).toBe(false);
  });
});

describe('soak (short)', () => {
  it('keeps file descriptors flat across close/reopen cycles and loses nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vde-soak-test-'));
    try {
      const r = await runSoak({
        adapter: createVdeAdapter({ walSizeBytes: 256 * 1024 }),
        path: join(dir, 's.vde'),
        durationMs: 3000,
        sampleEveryMs: 750,
        writers: 8,
        keys: 64,
        maxValueBytes: 32 * 1024,
        seed: 1,
      });
      expect(r.samples.length).toBeGreaterThanOrEqual(3);
      expect(r.ops).toBeGreaterThan(0);
      if (openFileDescriptors() >= 0) expect(r.fdGrowth).toBeLessThanOrEqual(0);
      expect(r).toMatchObject({ lost: 0, corrupt: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('OutcomeModel memory', () => {
  it('forgets superseded writes, so a long soak does not grow with every operation', () => {
    const m = new OutcomeModel();
    for (let i = 0; i < 10_000; i++) m.ack(m.invoke('k', i));
    expect(m.allowed('k')).toEqual([9_999]);
    expect(m.written('k').length).toBeLessThan(20);
    const pending = m.invoke('k', -1);
    for (let i = 0; i < 100; i++) m.ack(m.invoke('k', 20_000 + i));
    // A write still in flight stays possible whatever was acknowledged after it was invoked.
    expect(m.allowed('k')).toEqual(expect.arrayContaining([-1, 20_099]));
    m.fail(pending);
  });
});
