import { fileURLToPath } from 'node:url';

const names = ['concurrency', 'block-device', 'allocator', 'wal', 'btree', 'engine', 'test-harness', 'cli', 'level'];

/** Tests import sibling packages from their TypeScript sources, so `vitest run` needs no build first. */
export const vdeAliases = Object.fromEntries(
  names.map((n) => [`@vde/${n}`, fileURLToPath(new URL(`./packages/${n}/src/index.ts`, import.meta.url))]),
);
