import { InvalidArgumentError, VdeError, VirtualDiskEngine, type BlockDevice, type EngineOptions } from '@vde/engine';
import type { StoreAdapter, StoreHandle, StoredObject } from './store-adapter.js';

/**
 * The `StoreAdapter` for VDE's `VirtualDiskEngine`. `options` are engine options (e.g. a small `walSizeBytes` to
 * make checkpoints frequent); `readOnly` from `open` is added to them.
 */
export function createVdeAdapter(options: EngineOptions = {}): StoreAdapter {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError('createVdeAdapter(options): options must be an object of engine options');
  }
  return {
    name: 'vde',
    corruptCodes: ['ERR_VDE_CORRUPT', 'ERR_VDE_FORMAT'],
    ioCodes: ['ERR_VDE_IO', 'ERR_VDE_FULL', 'ERR_VDE_POISONED'],
    errorCode(err: unknown): string | undefined {
      return err instanceof VdeError ? err.code : undefined;
    },
    async open(target: string | BlockDevice, extra: { readOnly?: boolean; create?: boolean } = {}): Promise<StoreHandle> {
      const engine = await VirtualDiskEngine.open(target, {
        ...options,
        ...(extra.readOnly ? { readOnly: true } : {}),
        ...(extra.create === false ? { create: false } : {}),
      });
      return vdeHandle(engine);
    },
  };
}

/** Wraps an open engine in the adapter's `StoreHandle`. */
export function vdeHandle(engine: VirtualDiskEngine): StoreHandle {
  return {
    async put(key, value, metadata) {
      await engine.store(key, value, { metadata });
    },
    async get(key): Promise<StoredObject | undefined> {
      // retrieve() returns bytes, stat() metadata: read stat, bytes, stat again, and retry if a concurrent store or
      // delete came between them (every store gets a new etag, so equal etags mean one version).
      for (;;) {
        const before = await notFoundAsUndefined(engine.stat(key));
        if (!before) return undefined;
        const value = await notFoundAsUndefined(engine.retrieve(key));
        const after = await notFoundAsUndefined(engine.stat(key));
        if (value && after?.etag === before.etag) return { value, metadata: after.metadata };
      }
    },
    delete: (key) => engine.delete(key),
    async keys() {
      const out: string[] = [];
      for await (const o of engine.list()) out.push(o.key);
      return out;
    },
    async check() {
      await engine.check();
    },
    async scrub() {
      const report = await engine.scrub();
      return { problems: report.problems };
    },
    checkpoint: () => engine.checkpoint(),
    close: () => engine.close(),
  };
}

async function notFoundAsUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof VdeError && err.code === 'ERR_VDE_NOT_FOUND') return undefined;
    throw err;
  }
}
