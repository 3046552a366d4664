import * as path from 'node:path';

let written = 0;

/**
 * The temporary file that `get -o` and `export` write before renaming it to `target`: in the same directory (so the
 * rename stays on one file system), named `.vde-partial-<pid>-<n>` whatever the target's name, so that a target name
 * near the 255-byte limit of a file name still gets a temporary file (`<target>.vde-partial-<pid>` was
 * ENAMETOOLONG for names within 20 bytes of the limit, depending on the pid).
 */
export function partialPathFor(target: string): string {
  return path.join(path.dirname(target), `.vde-partial-${process.pid}-${written++}`);
}
