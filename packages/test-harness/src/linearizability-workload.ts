import { InvalidArgumentError, type BlockDevice } from '@vde/block-device';
import { HistoryRecorder, checkLinearizable, type LinearizabilityOptions, type LinearizabilityResult } from './linearizability.js';
import { SeededRandom } from './random.js';
import type { StoreAdapter } from './store-adapter.js';
import { hash32 } from './values.js';
import { checkAdapter, checkCount, checkOptionsObject, checkSeed } from './options.js';

export interface LinearizabilityWorkloadOptions {
  adapter: StoreAdapter;
  /** Where the store lives (a fresh `MemoryBlockDevice` is typical). */
  target: string | BlockDevice;
  seed: number;
  /** Concurrent clients (default 16), operations per client (default 40), keys (default 4: contention is the point). */
  clients?: number;
  opsPerClient?: number;
  keys?: number;
  /** Checkpoint every this many operations of client 0 (default 10; 0 = never), if the store has `checkpoint`. */
  checkpointEvery?: number;
  check?: LinearizabilityOptions;
}

/**
 * Runs concurrent clients doing put/get/delete on a few shared keys against a real store, records the history
 * (`HistoryRecorder`: invoke before each call, ok after it resolved) and checks it with `checkLinearizable`.
 * Values are short labels `c<client>-<i>` stored as UTF-8; a rejected call is left pending.
 */
export async function runLinearizabilityWorkload(
  options: LinearizabilityWorkloadOptions,
): Promise<LinearizabilityResult & { operations: number }> {
  const o = checkOptionsObject('runLinearizabilityWorkload', options);
  checkAdapter('runLinearizabilityWorkload', o);
  if (typeof o.target !== 'string' && (o.target === null || typeof o.target !== 'object')) {
    throw new InvalidArgumentError('runLinearizabilityWorkload: target must be a path or a BlockDevice');
  }
  checkSeed('runLinearizabilityWorkload', o, 'seed', false);
  for (const name of ['clients', 'keys']) checkCount('runLinearizabilityWorkload', o, name, 1);
  for (const name of ['opsPerClient', 'checkpointEvery']) checkCount('runLinearizabilityWorkload', o, name, 0);
  const store = await options.adapter.open(options.target);
  const recorder = new HistoryRecorder();
  const keys = options.keys ?? 4;
  const text = new TextDecoder();
  try {
    await Promise.all(
      Array.from({ length: options.clients ?? 16 }, async (_, c) => {
        const rnd = new SeededRandom(hash32(`client ${c}`, options.seed));
        for (let i = 0; i < (options.opsPerClient ?? 40); i++) {
          const key = `key${rnd.int(keys)}`;
          const kind = rnd.int(10);
          if (c === 0 && store.checkpoint && options.checkpointEvery !== 0 && i % (options.checkpointEvery ?? 10) === 9) await store.checkpoint();
          try {
            if (kind < 4) {
              const value = `c${c}-${i}`;
              await recorder.record({ f: 'put', key, value }, () => store.put(key, new TextEncoder().encode(value), {}), undefined, c);
            } else if (kind < 8) {
              await recorder.record({ f: 'get', key }, () => store.get(key), (got) => (got ? text.decode(got.value) : null), c);
            } else {
              await recorder.record({ f: 'delete', key }, () => store.delete(key), (existed) => existed, c);
            }
          } catch {
            // left pending in the history; the checker allows it to have happened or not
          }
        }
      }),
    );
  } finally {
    await store.close();
  }
  const result = checkLinearizable(recorder.events, options.check);
  return { ...result, operations: recorder.events.filter((e) => e.type === 'invoke').length };
}
