import { MemoryBlockDevice } from '@vde/block-device';
import { createVdeAdapter, runLinearizabilityWorkload, type StoreAdapter, type StoreHandle } from '@vde/test-harness';
import { describe, expect, it } from 'vitest';

const SMALL = { walSizeBytes: 64 * 1024, cacheSizeBytes: 128 * 1024 };

describe('histories recorded from concurrent clients against the engine are linearizable (DESIGN.md invariant 1)', () => {
  const random = Math.floor(Math.random() * 2 ** 31);
  for (const seed of [1, 2, 3, random]) {
    it(`16 clients, 4 keys, checkpoints in between, seed ${seed}`, async () => {
      if (seed === random) console.log(`linearizability random seed ${seed}`);
      const r = await runLinearizabilityWorkload({ adapter: createVdeAdapter(SMALL), target: new MemoryBlockDevice({ blockSize: 4096 }), seed });
      expect(r.ops ?? []).toEqual([]);
      expect(r.verdict).toBe('ok');
      expect(r.operations).toBe(16 * 40);
      expect(r.keys).toBe(4);
    });
  }

  it('rejects a store that serves reads from a stale cache', async () => {
    // A Map store whose get() returns the value it returned last time for the key, if any (a broken read cache).
    const stale: StoreAdapter = {
      name: 'stale-cache',
      corruptCodes: [],
      ioCodes: [],
      errorCode: () => undefined,
      async open(): Promise<StoreHandle> {
        const data = new Map<string, Uint8Array>();
        const cache = new Map<string, Uint8Array | undefined>();
        const tick = () => new Promise((r) => setImmediate(r));
        return {
          async put(k, v) {
            await tick();
            data.set(k, v);
          },
          async get(k) {
            await tick();
            if (!cache.has(k)) cache.set(k, data.get(k));
            const v = cache.get(k);
            return v ? { value: v, metadata: {} } : undefined;
          },
          async delete(k) {
            await tick();
            return data.delete(k);
          },
          keys: async () => [...data.keys()],
          check: async () => undefined,
          close: async () => undefined,
        };
      },
    };
    const r = await runLinearizabilityWorkload({ adapter: stale, target: 'unused', seed: 1 });
    expect(r.verdict).toBe('illegal');
    expect(r.ops!.length).toBeGreaterThan(0);
  });
});
