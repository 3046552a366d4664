import { defineProject } from 'vitest/config';
import { vdeAliases } from '../../vitest.shared.js';

export default defineProject({
  resolve: { alias: vdeAliases },
  test: { name: 'engine', include: ['test/**/*.test.ts'], testTimeout: 60_000 },
});
