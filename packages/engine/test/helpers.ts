import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine, type EngineOptions } from '@vde/engine';
import { expect } from 'vitest';

/**
 * A caller's own BlockDevice around `inner` (as for metrics or a remote file): the required methods go to `inner`,
 * `overrides` replace or add any (`writeDurable`, `setReaderMark`, … only when given).
 */
export function forwarding(inner: BlockDevice, overrides: Partial<BlockDevice> = {}): BlockDevice {
  return {
    get blockSize() {
      return inner.blockSize;
    },
    get blockCount() {
      return inner.blockCount;
    },
    get readOnly() {
      return inner.readOnly;
    },
    read: (b, n) => inner.read(b, n),
    readInto: (b, buf) => inner.readInto(b, buf),
    write: (b, d) => inner.write(b, d),
    sync: () => inner.sync(),
    grow: (n) => inner.grow(n),
    close: () => inner.close(),
    ...overrides,
  };
}

export const SMALL: EngineOptions = { walSizeBytes: 256 * 1024, cacheSizeBytes: 256 * 1024 };

export async function memoryEngine(options: EngineOptions = {}, blockSize = options.blockSize ?? 4096) {
  const device = new MemoryBlockDevice({ blockSize });
  const vde = await VirtualDiskEngine.open(device, { ...SMALL, ...options });
  return { device, vde };
}

export async function tempDir(): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'vde-engine-'));
  return { dir, [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
}

/** Every engine test ends here: the store must pass its own consistency check. */
export async function checked(vde: VirtualDiskEngine): Promise<void> {
  const report = await vde.check();
  expect(report.objects).toBe(vde.stats().objects);
}

export function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect((err as { code?: string }).code, String(err)).toBe(code);
    return;
  }
  throw new Error(`expected an error with code ${code}, but it succeeded`);
}

/** Byte equality without vitest's slow element-by-element diff of typed arrays. */
export function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  const same = Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)) === 0;
  expect(same, 'bytes differ').toBe(true);
}

/** Counts turns of the event loop (check phases) from now until `stop()`. */
export function turnCounter(): { turns: () => number; stop: () => void } {
  let turns = 0;
  let done = false;
  const tick = (): void => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    turns: () => turns,
    stop: () => {
      done = true;
    },
  };
}

/**
 * Stores `bytes(size, i)` under k0, k1, … until one store fails (at most `max` tries), expects that failure to be
 * ERR_VDE_FULL, and returns the indexes stored before it.
 */
export async function storeUntilFull(vde: VirtualDiskEngine, size: number, max = 100): Promise<number[]> {
  const kept: number[] = [];
  for (let i = 0; i < max; i++) {
    try {
      await vde.store(`k${i}`, bytes(size, i));
      kept.push(i);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ERR_VDE_FULL');
      return kept;
    }
  }
  throw new Error(`${max} stores of ${size} bytes did not fill the container`);
}
