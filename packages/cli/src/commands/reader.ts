import type { Snapshot, VirtualDiskEngine } from '@vde/engine';

/** The read API that the live store and a snapshot share. */
export type ObjectReader = Pick<Snapshot, 'retrieve' | 'createReadStream' | 'exists' | 'stat' | 'list'>;

/** Runs `fn` against the live store, or against the named snapshot (released afterwards). */
export async function withReader<T>(vde: VirtualDiskEngine, snapshot: string | undefined, fn: (reader: ObjectReader) => Promise<T>): Promise<T> {
  if (snapshot === undefined) return fn(vde);
  const snap = await vde.openSnapshot(snapshot);
  try {
    return await fn(snap);
  } finally {
    await snap.close();
  }
}
