import * as fs from 'node:fs/promises';
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
