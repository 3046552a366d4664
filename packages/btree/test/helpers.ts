import { expect } from 'vitest';
import type { BTree, EntryBatch, KeyRange } from '@vde/btree';

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Keys in the model are hex strings: their string order is the unsigned byte order of the keys. */
export type Model = Map<string, Uint8Array>;

export function modelRange(model: Model, range: KeyRange): [string, string][] {
  let keys = [...model.keys()].sort();
  const gt = range.gt && hex(range.gt);
  const gte = range.gte && hex(range.gte);
  const lt = range.lt && hex(range.lt);
  const lte = range.lte && hex(range.lte);
  const prefix = range.prefix && hex(range.prefix);
  keys = keys.filter(
    (k) =>
      (gt === undefined || k > gt) &&
      (gte === undefined || k >= gte) &&
      (lt === undefined || k < lt) &&
      (lte === undefined || k <= lte) &&
      (prefix === undefined || k.startsWith(prefix)),
  );
  if (range.reverse) keys.reverse();
  if (range.limit !== undefined && range.limit >= 0) keys = keys.slice(0, range.limit);
  return keys.map((k) => [k, hex(model.get(k)!)]);
}

export async function treeRange(tree: BTree, range: KeyRange): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const [k, v] of tree.entries(range)) out.push([hex(k), hex(v)]);
  return out;
}

/** Full content equality (forward scan, reverse scan, count) plus the structural check. */
export async function expectSameContent(tree: BTree, model: Model): Promise<void> {
  const all = modelRange(model, {});
  expect(await treeRange(tree, {})).toEqual(all);
  const rev: string[] = [];
  for await (const k of tree.keys({ reverse: true })) rev.push(hex(k));
  expect(rev).toEqual(all.map(([k]) => k).reverse());
  expect(await tree.count()).toBe(model.size);
  await tree.check();
}

/**
 * `tree.entryBatches(range)` or, with `runs`, `tree.entryRuns(range)` turned into the same shape (views of each
 * run's leaf copy at its entry offsets): lets one test check both.
 */
export async function* batchesOf(tree: BTree, range: KeyRange | undefined, runs: boolean): AsyncGenerator<EntryBatch> {
  if (!runs) {
    yield* tree.entryBatches(range);
    return;
  }
  for await (const { bytes, offsets } of tree.entryRuns(range)) {
    const keys: Uint8Array[] = [];
    const values: Uint8Array[] = [];
    for (const off of offsets) {
      const kl = bytes[off]! | (bytes[off + 1]! << 8);
      const vl = bytes[off + 2]! | (bytes[off + 3]! << 8);
      keys.push(bytes.subarray(off + 4, off + 4 + kl));
      values.push(bytes.subarray(off + 4 + kl, off + 4 + kl + vl));
    }
    yield { keys, values };
  }
}
