import { describe, expect, it } from 'vitest';
import { type BlockDevice, MemoryBlockDevice, VirtualDiskEngine } from '@vde/engine';
import { SMALL, bytes, checked, expectBytes, forwarding } from './helpers.js';

/**
 * A caller's own BlockDevice (a wrapper, as for metrics or a remote file) with a reader table: the engine wraps such
 * devices to type their errors, and that wrapper must keep setReaderMark/readerMarks (block-device README).
 */
function wrapped(inner: BlockDevice, table: { marks: (number | null)[]; set: number[] }): BlockDevice {
  return forwarding(inner, {
    close: async () => undefined,
    setReaderMark: async (mark) => {
      table.set.push(mark);
    },
    readerMarks: async () => table.marks,
  });
}

describe("a caller's device keeps its reader table", () => {
  it('a writer holds what a reader in the table may read, and a read-only open sets its mark', async () => {
    const inner = new MemoryBlockDevice({ blockSize: 4096 });
    const table = { marks: [] as (number | null)[], set: [] as number[] };
    const vde = await VirtualDiskEngine.open(wrapped(inner, table), SMALL);
    const first = bytes(40_000, 1);
    await vde.store('a', first);
    await vde.checkpoint();
    const readerGeneration = vde.stats().generation;
    // A read-only open elsewhere reads this checkpoint: the old version of 'a' must stay where it is.
    table.marks = [readerGeneration];
    await vde.store('a', bytes(40_000, 2));
    await vde.checkpoint();
    await vde.checkpoint();
    expect(vde.stats().pendingFreeBlocks).toBeGreaterThanOrEqual(10);
    // Another store does not take them (they are not free) while the reader is there.
    const free = vde.stats().freeBlocks;
    await vde.store('b', bytes(40_000, 3));
    await vde.checkpoint();
    expect(vde.stats().pendingFreeBlocks).toBeGreaterThanOrEqual(10);
    expect(vde.stats().freeBlocks).toBeLessThan(free);
    // The reader is gone: the next checkpoint frees them.
    table.marks = [];
    await vde.checkpoint();
    expect(vde.stats().pendingFreeBlocks).toBe(0);
    await checked(vde);
    await vde.close();

    const reader = await VirtualDiskEngine.open(wrapped(inner, table), { readOnly: true });
    expect(table.set).toEqual([reader.stats().generation]);
    expectBytes(await reader.retrieve('a'), bytes(40_000, 2));
    await checked(reader);
    await reader.close();
  });
});
