/**
 * The crash runner's child process: `node crash-child.js '<CrashChildConfig JSON>'`. It opens the store through the
 * configured adapter, prints `{"t":"ready"}`, then runs `writers` concurrent writers forever (puts of mixed sizes,
 * overwrites and deletes over `keys` shared keys) and prints one line per issued, acknowledged and rejected write.
 * The parent kills it with SIGKILL. See `crash-protocol.ts` for the lines.
 */
import { writeSync } from 'node:fs';
import { type CrashChildConfig, type CrashChildLine, VERSIONS_PER_ROUND, keyName } from './crash-protocol.js';
import { SeededRandom } from './random.js';
import { loadAdapter } from './store-adapter.js';
import { hash32, metadataFor, valueFor } from './values.js';

function emit(line: CrashChildLine): void {
  writeSync(1, `${JSON.stringify(line)}\n`);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as CrashChildConfig;
  const adapter = await loadAdapter(config.adapter);
  const store = await adapter.open(config.path);
  emit({ t: 'ready' });
  let nextVersion = config.round * VERSIONS_PER_ROUND + 1;
  let nextId = 1;
  const writer = async (w: number): Promise<void> => {
    const rng = new SeededRandom(hash32(`writer ${w} round ${config.round}`, config.seed));
    for (;;) {
      const key = keyName(rng.int(config.keys));
      const del = rng.next() < config.deleteRatio;
      const version = del ? null : nextVersion++;
      const id = nextId++;
      emit({ t: 'i', id, k: key, v: version });
      try {
        if (version === null) await store.delete(key);
        else await store.put(key, valueFor(config.seed, key, version, config.maxValueBytes), metadataFor(key, version));
        emit({ t: 'a', id });
      } catch (err) {
        const code = adapter.errorCode(err) ?? `untyped ${err instanceof Error ? err.message : String(err)}`;
        emit({ t: 'f', id, code });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  };
  await Promise.all(Array.from({ length: config.writers }, (_, w) => writer(w)));
}

main().catch((err: unknown) => {
  process.stderr.write(`crash child failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
