import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh directory on a RAM file system where there is one (fsync there is free), else in the temp dir. */
export async function scratchDir(prefix: string): Promise<string> {
  let root = os.tmpdir();
  try {
    await fs.access('/dev/shm', fs.constants.W_OK);
    root = '/dev/shm';
  } catch {
    // no /dev/shm (macOS, Windows): the temp dir works, only slower
  }
  return fs.mkdtemp(path.join(root, prefix));
}

export const LONG = Boolean(process.env.VDE_LONG);

/** Unsigned byte order, what level sorts keys by. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}
