import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The crash runner's child process runs plain JavaScript from this package's dist (and the engine's), so tests
 * that spawn it build first. `tsc -b` is incremental: when dist is up to date this takes about a second.
 */
export function buildDist(): void {
  const root = fileURLToPath(new URL('../../..', import.meta.url));
  execSync('npx tsc -b packages/test-harness', { cwd: root, stdio: 'inherit' });
}
