import { VdeError, VirtualDiskEngine, type BlockDevice, type EngineOptions } from '@vde/engine';
import type { StoreAdapter, StoreHandle, StoredObject } from './store-adapter.js';

/**
 * The `StoreAdapter` for VDE's `VirtualDiskEngine`. `options` are engine options (e.g. a small `walSizeBytes` to
 * make checkpoints frequent); `readOnly` from `open` is added to them.
 */
export function createVdeAdapter(options: EngineOptions = {}): StoreAdapter {
  return {
    name: 'vde',
    corruptCodes: ['ERR_VDE_CORRUPT', 'ERR_VDE_FORMAT'],
    ioCodes: ['ERR_VDE_IO', 'ERR_VDE_FULL', 'ERR_VDE_POISONED'],
    errorCode(err: unknown): string | undefined {
      return err instanceof VdeError ? err.code : undefined;
    },
    async open(target: string | BlockDevice, extra: { readOnly?: boolean } = {}): Promise<StoreHandle> {
      const engine = await VirtualDiskEngine.open(target, { ...options, ...(extra.readOnly ? { readOnly: true } : {}) });
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
      let value: Uint8Array;
      try {
        value = await engine.retrieve(key);
      } catch (err) {
        if (err instanceof VdeError && err.code === 'ERR_VDE_NOT_FOUND') return undefined;
        throw err;
      }
      const info = await engine.stat(key);
      return { value, metadata: info.metadata };
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
