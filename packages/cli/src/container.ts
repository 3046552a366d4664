import * as fs from 'node:fs/promises';
import { type EngineOptions, NotFoundError, VirtualDiskEngine } from '@vde/engine';

/**
 * Opens an existing container. Every command but `create` and `demo` uses this, so a typo in the file name is
 * an error (`ERR_VDE_NOT_FOUND`) instead of a new empty container.
 */
export async function openExisting(file: string, options: EngineOptions = {}): Promise<VirtualDiskEngine> {
  try {
    await fs.stat(file);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') {
      throw new NotFoundError(`no container at ${file} (create one with: vde create ${file})`);
    }
    throw err;
  }
  return VirtualDiskEngine.open(file, { ...options, create: false });
}

/** Removes a container file and its lock file if they exist. */
export async function removeContainer(file: string): Promise<void> {
  await fs.rm(file, { force: true });
  await fs.rm(`${file}.lock`, { force: true });
}
