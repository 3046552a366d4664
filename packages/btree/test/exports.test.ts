import * as blockDevice from '@vde/block-device';
import * as btree from '@vde/btree';
import { describe, expect, it } from 'vitest';

describe('@vde/btree entry point', () => {
  it('exports the error classes the tree throws, identical to @vde/block-device', async () => {
    for (const name of ['VdeError', 'CorruptionError', 'InvalidArgumentError', 'TooLargeError', 'ReadOnlyError', 'OutOfRangeError'] as const) {
      expect(btree[name], name).toBe(blockDevice[name]);
    }
    // A bad page read, caught with the class imported from @vde/btree alone.
    const store = new btree.MemoryPageStore(512);
    const tree = btree.BTree.create(store);
    await tree.put(new Uint8Array([1]), new Uint8Array([2]));
    const { root } = await tree.flush();
    const page = await store.read(root);
    page[40] = (page[40] ?? 0) ^ 0xff;
    await store.write(root, page);
    const err = await btree.BTree.open(store, root)
      .then((t) => t.get(new Uint8Array([1])))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(btree.CorruptionError);
    expect((err as btree.CorruptionError).code).toBe('ERR_VDE_CORRUPT');
    expect(() => btree.BTree.create(store, { cacheSizeBytes: -1 })).toThrow(btree.InvalidArgumentError);
  });
});
