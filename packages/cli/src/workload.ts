import type { VirtualDiskEngine } from '@vde/engine';

/** mulberry32: a tiny seeded PRNG, so a workload can be regenerated to verify what was stored. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const POOL_BYTES = 1 << 20;

/**
 * A reproducible set of objects: keys, sizes from `minBytes` to `maxBytes`, and bytes that are windows into
 * one random pool (so a big workload costs 1 MiB of memory, not its total size).
 */
export class Workload {
  readonly keys: string[] = [];
  readonly sizes: number[] = [];
  readonly totalBytes: number;
  readonly #offsets: number[] = [];
  readonly #pool: Uint8Array;

  constructor(count: number, minBytes: number, maxBytes: number, keyPrefix: string, seed = 0x5eed) {
    const random = prng(seed);
    this.#pool = new Uint8Array(POOL_BYTES + maxBytes);
    for (let i = 0; i < this.#pool.length; i++) this.#pool[i] = (random() * 256) | 0;
    let total = 0;
    const width = String(Math.max(count - 1, 0)).length;
    for (let i = 0; i < count; i++) {
      const size = minBytes + Math.floor(random() * (maxBytes - minBytes + 1));
      this.keys.push(`${keyPrefix}${String(i).padStart(width, '0')}`);
      this.sizes.push(size);
      this.#offsets.push(Math.floor(random() * POOL_BYTES));
      total += size;
    }
    this.totalBytes = total;
  }

  get count(): number {
    return this.keys.length;
  }

  /** The bytes of object `i` (a view into the pool: do not modify). */
  data(i: number): Uint8Array {
    const offset = this.#offsets[i]!;
    return this.#pool.subarray(offset, offset + this.sizes[i]!);
  }

  /**
   * Stores every object with `writers` concurrent writers (each takes the next object when its last store
   * resolved). Resolves with the elapsed milliseconds.
   */
  async storeAll(vde: VirtualDiskEngine, writers: number, onStored?: (bytes: number) => void): Promise<number> {
    let next = 0;
    const started = performance.now();
    const writer = async (): Promise<void> => {
      for (let i = next++; i < this.count; i = next++) {
        await vde.store(this.keys[i]!, this.data(i));
        onStored?.(this.sizes[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, writers) }, writer));
    return performance.now() - started;
  }
}
