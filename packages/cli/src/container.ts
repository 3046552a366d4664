import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type EngineOptions, ExistsError, NotFoundError, VirtualDiskEngine } from '@vde/engine';

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

/**
 * Removes a container that this command is about to create again (the demo's). Only a VDE container that nobody
 * has open: opening it first takes its writer lock, so a container another process is writing to is
 * `ERR_VDE_LOCKED`, and a file that is not a container (`ERR_VDE_FORMAT`, an empty file included) is refused with
 * `ERR_VDE_EXISTS`: the demo never deletes someone's data.
 */
export async function replaceContainer(file: string): Promise<void> {
  try {
    await fs.stat(file);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return;
    throw err;
  }
  let vde: VirtualDiskEngine;
  try {
    vde = await VirtualDiskEngine.open(file, { create: false });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_VDE_FORMAT') {
      throw new ExistsError(`${file} exists and is not a VDE container: it is left alone (choose another file name)`);
    }
    throw err;
  }
  await vde.close();
  await fs.rm(file, { force: true });
}

/** Removes a container this command created and has closed. */
export async function removeOwnContainer(file: string): Promise<void> {
  await fs.rm(file, { force: true });
}

/**
 * A test for "this path is one of the container's own files": the container itself (by device and inode, so also
 * under another name, a hard link or a symbolic link) or, in its directory, its lock files (`<name>.lock`,
 * `<name>.lock.<token>.id`) and its reader table (`<name>.readers`). `import` skips them (storing a container into
 * itself grows it without end) and `export` and `get -o` never write to them (that would destroy the container).
 * `stats` is the candidate's `fs.stat`, when the caller has it already.
 */
export async function ownFilesOf(file: string): Promise<(candidate: string, stats?: Stats) => Promise<boolean>> {
  // A container that does not exist (yet) has no own files to find by identity; the command's open reports it.
  const real = await fs.realpath(file).catch(() => path.resolve(file));
  const own = await fs.stat(real).catch(() => undefined);
  const dir = path.dirname(real);
  const base = path.basename(real);
  return async (candidate, stats) => {
    const st = stats ?? (await fs.stat(candidate).catch(() => undefined));
    if (own !== undefined && st !== undefined && st.dev === own.dev && st.ino === own.ino) return true;
    const name = path.basename(candidate);
    if (name !== `${base}.lock` && !name.startsWith(`${base}.lock.`) && name !== `${base}.readers`) return false;
    const parent = await fs.realpath(path.dirname(path.resolve(candidate))).catch(() => undefined);
    return parent === dir;
  };
}
