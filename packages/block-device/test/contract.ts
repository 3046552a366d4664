import { describe, expect, it } from 'vitest';
import type { BlockDevice } from '../src/index.js';
import { sameBytes } from './helpers.js';

/** How a contract run makes devices. `prefill` blocks are written with `fillByte(blockNo)` before opening. */
export interface DeviceFactory {
  make(options: { blockSize: number; blockCount: number; readOnly?: boolean }): Promise<BlockDevice>;
}

export function fillByte(blockNo: number): number {
  return (blockNo * 37 + 11) & 0xff;
}

function pattern(blockSize: number, blockNo: number, salt = 0): Uint8Array {
  const b = new Uint8Array(blockSize);
  for (let i = 0; i < blockSize; i++) b[i] = (blockNo * 131 + i * 7 + salt) & 0xff;
  return b;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

/** The `BlockDevice` contract (see src/block-device.ts), run against every implementation. */
export function blockDeviceContract(name: string, factory: DeviceFactory): void {
  for (const blockSize of [512, 4096]) {
    describe(`${name} contract (blockSize ${blockSize})`, () => {
      it('round-trips many blocks written one at a time', async () => {
        const dev = await factory.make({ blockSize, blockCount: 200 });
        try {
          expect(dev.blockSize).toBe(blockSize);
          expect(dev.blockCount).toBe(200);
          for (let b = 0; b < 200; b++) await dev.write(b, pattern(blockSize, b));
          for (let b = 0; b < 200; b++) expect(sameBytes(await dev.read(b, 1), pattern(blockSize, b))).toEqual({ equal: true });
          const all = await dev.read(0, 200);
          for (let b = 0; b < 200; b++) {
            expect(sameBytes(all.subarray(b * blockSize, (b + 1) * blockSize), pattern(blockSize, b))).toEqual({ equal: true });
          }
        } finally {
          await dev.close();
        }
      });

      it('reads and writes several blocks per call', async () => {
        const dev = await factory.make({ blockSize, blockCount: 16 });
        try {
          const data = new Uint8Array(5 * blockSize);
          for (let b = 0; b < 5; b++) data.set(pattern(blockSize, b + 3, 1), b * blockSize);
          await dev.write(3, data);
          expect(sameBytes(await dev.read(3, 5), data)).toEqual({ equal: true });
          const into = new Uint8Array(2 * blockSize);
          await dev.readInto(4, into);
          expect(sameBytes(into, data.subarray(blockSize, 3 * blockSize))).toEqual({ equal: true });
          expect(sameBytes(await dev.read(0, 1), new Uint8Array(blockSize))).toEqual({ equal: true });
          expect(sameBytes(await dev.read(8, 1), new Uint8Array(blockSize))).toEqual({ equal: true });
          expect(sameBytes(await dev.read(2, 0), new Uint8Array(0))).toEqual({ equal: true });
        } finally {
          await dev.close();
        }
      });

      it('rejects out-of-range, partial-block and non-integer I/O with ERR_VDE_RANGE', async () => {
        const dev = await factory.make({ blockSize, blockCount: 4 });
        try {
          const one = new Uint8Array(blockSize);
          await expectCode(dev.read(-1, 1), 'ERR_VDE_RANGE');
          await expectCode(dev.read(4, 1), 'ERR_VDE_RANGE');
          await expectCode(dev.read(3, 2), 'ERR_VDE_RANGE');
          await expectCode(dev.read(1.5, 1), 'ERR_VDE_RANGE');
          await expectCode(dev.read(Number.NaN, 1), 'ERR_VDE_RANGE');
          await expectCode(dev.read(0, 1.5), 'ERR_VDE_RANGE');
          await expectCode(dev.read(0, -1), 'ERR_VDE_RANGE');
          await expectCode(dev.readInto(0, new Uint8Array(blockSize + 1)), 'ERR_VDE_RANGE');
          await expectCode(dev.readInto(4, one), 'ERR_VDE_RANGE');
          await expectCode(dev.write(-1, one), 'ERR_VDE_RANGE');
          await expectCode(dev.write(4, one), 'ERR_VDE_RANGE');
          await expectCode(dev.write(3, new Uint8Array(2 * blockSize)), 'ERR_VDE_RANGE');
          await expectCode(dev.write(0, new Uint8Array(blockSize - 1)), 'ERR_VDE_RANGE');
          await expectCode(dev.write(0.5, one), 'ERR_VDE_RANGE');
          await expectCode(dev.grow(2.5), 'ERR_VDE_RANGE');
          await expectCode(dev.grow(-1), 'ERR_VDE_RANGE');
          // Nothing was written by the failed calls.
          expect(sameBytes(await dev.read(0, 4), new Uint8Array(4 * blockSize))).toEqual({ equal: true });
        } finally {
          await dev.close();
        }
      });

      it('refuses a buffer that is not a Uint8Array with ERR_VDE_INVALID_ARGUMENT and writes nothing', async () => {
        const dev = await factory.make({ blockSize, blockCount: 2 });
        try {
          // A Uint16Array of blockSize / 2 elements is one block of bytes, but its elements are not bytes: refused
          // (the file and memory devices used to store it differently), as are null and look-alike objects.
          const bad: unknown[] = [null, undefined, 'x'.repeat(blockSize), { byteLength: blockSize }, new Uint16Array(blockSize / 2).fill(0x0102)];
          for (const b of bad) {
            await expectCode(dev.write(0, b as Uint8Array), 'ERR_VDE_INVALID_ARGUMENT');
            await expectCode(dev.readInto(0, b as Uint8Array), 'ERR_VDE_INVALID_ARGUMENT');
            if (dev.writeDurable) await expectCode(dev.writeDurable(0, b as Uint8Array), 'ERR_VDE_INVALID_ARGUMENT');
            if (dev.writeDurableSync) expect(() => dev.writeDurableSync!(0, b as Uint8Array)).toThrow(expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' }));
          }
          expect(sameBytes(await dev.read(0, 2), new Uint8Array(2 * blockSize))).toEqual({ equal: true });
          // A Buffer is a Uint8Array.
          await dev.write(1, Buffer.alloc(blockSize, 9));
          expect(sameBytes(await dev.read(1, 1), new Uint8Array(blockSize).fill(9))).toEqual({ equal: true });
        } finally {
          await dev.close();
        }
      });

      it('grows issued together never shrink the device: the largest wins, and its blocks stay after sync', async () => {
        const dev = await factory.make({ blockSize, blockCount: 2 });
        try {
          await Promise.all([dev.grow(16), dev.grow(4), dev.grow(9)]);
          expect(dev.blockCount).toBe(16);
          const both = Promise.all([dev.grow(32), dev.grow(20)]);
          await both;
          await dev.write(30, pattern(blockSize, 30));
          await dev.sync();
          expect(dev.blockCount).toBe(32);
          expect(sameBytes(await dev.read(30, 1), pattern(blockSize, 30))).toEqual({ equal: true });
          expect(sameBytes(await dev.read(31, 1), new Uint8Array(blockSize))).toEqual({ equal: true });
        } finally {
          await dev.close();
        }
      });

      it('throws ERR_VDE_CLOSED after close, and close is idempotent', async () => {
        const dev = await factory.make({ blockSize, blockCount: 2 });
        await dev.close();
        await dev.close();
        await expectCode(dev.read(0, 1), 'ERR_VDE_CLOSED');
        await expectCode(dev.readInto(0, new Uint8Array(blockSize)), 'ERR_VDE_CLOSED');
        await expectCode(dev.write(0, new Uint8Array(blockSize)), 'ERR_VDE_CLOSED');
        await expectCode(dev.sync(), 'ERR_VDE_CLOSED');
        await expectCode(dev.grow(10), 'ERR_VDE_CLOSED');
      });

      it('read-only devices refuse writes and grow but read', async () => {
        const dev = await factory.make({ blockSize, blockCount: 3, readOnly: true });
        try {
          expect(dev.readOnly).toBe(true);
          await expectCode(dev.write(0, new Uint8Array(blockSize)), 'ERR_VDE_READ_ONLY');
          await expectCode(dev.grow(10), 'ERR_VDE_READ_ONLY');
          await dev.sync();
          expect(dev.blockCount).toBe(3);
          expect((await dev.read(0, 3)).byteLength).toBe(3 * blockSize);
        } finally {
          await dev.close();
        }
      });

      it('grow adds zero blocks, keeps data and never shrinks', async () => {
        const dev = await factory.make({ blockSize, blockCount: 2 });
        try {
          await dev.write(1, pattern(blockSize, 1));
          await dev.grow(1000);
          expect(dev.blockCount).toBe(1000);
          expect(sameBytes(await dev.read(1, 1), pattern(blockSize, 1))).toEqual({ equal: true });
          expect(sameBytes(await dev.read(2, 998), new Uint8Array(998 * blockSize))).toEqual({ equal: true });
          await dev.write(999, pattern(blockSize, 999));
          expect(sameBytes(await dev.read(999, 1), pattern(blockSize, 999))).toEqual({ equal: true });
          await dev.grow(10);
          expect(dev.blockCount).toBe(1000);
          await dev.sync();
        } finally {
          await dev.close();
        }
      });

      it('concurrent writes to different blocks all land', async () => {
        const dev = await factory.make({ blockSize, blockCount: 256 });
        try {
          await Promise.all(Array.from({ length: 256 }, (_, b) => dev.write(b, pattern(blockSize, b, 5))));
          const sync = dev.sync();
          const reads = await Promise.all(Array.from({ length: 256 }, (_, b) => dev.read(b, 1)));
          await sync;
          reads.forEach((r, b) => expect(sameBytes(r, pattern(blockSize, b, 5))).toEqual({ equal: true }));
        } finally {
          await dev.close();
        }
      });

      it('writeDurable (when offered) writes like write, checks ranges, and refuses on closed and read-only devices', async () => {
        const dev = await factory.make({ blockSize, blockCount: 8 });
        if (!dev.writeDurable) {
          await dev.close();
          return;
        }
        try {
          await dev.write(0, pattern(blockSize, 0, 3));
          await dev.writeDurable(1, pattern(blockSize, 1, 3)); // one unsynced write before it
          await dev.writeDurable(2, pattern(blockSize, 2, 3)); // everything synced before it
          const two = new Uint8Array(2 * blockSize);
          two.set(pattern(blockSize, 5, 3));
          two.set(pattern(blockSize, 6, 3), blockSize);
          await dev.writeDurable(5, two);
          await Promise.all([dev.writeDurable(3, pattern(blockSize, 3, 3)), dev.write(4, pattern(blockSize, 4, 3))]);
          await dev.grow(9);
          await dev.writeDurable(8, pattern(blockSize, 8, 3)); // after a size change
          for (let b = 0; b < 9; b++) {
            const want = b === 7 ? new Uint8Array(blockSize) : pattern(blockSize, b, 3);
            expect(sameBytes(await dev.read(b, 1), want)).toEqual({ equal: true });
          }
          await expectCode(dev.writeDurable(9, pattern(blockSize, 9)), 'ERR_VDE_RANGE');
          await expectCode(dev.writeDurable(8, new Uint8Array(2 * blockSize)), 'ERR_VDE_RANGE');
          await expectCode(dev.writeDurable(0, new Uint8Array(blockSize + 1)), 'ERR_VDE_RANGE');
          await expectCode(dev.writeDurable(-1, pattern(blockSize, 0)), 'ERR_VDE_RANGE');
        } finally {
          await dev.close();
        }
        await expectCode(dev.writeDurable(0, new Uint8Array(blockSize)), 'ERR_VDE_CLOSED');
        const ro = await factory.make({ blockSize, blockCount: 2, readOnly: true });
        try {
          await expectCode(ro.writeDurable!(0, new Uint8Array(blockSize)), 'ERR_VDE_READ_ONLY');
          expect(sameBytes(await ro.read(0, 2), new Uint8Array(2 * blockSize))).toEqual({ equal: true });
        } finally {
          await ro.close();
        }
      });

      it('writeDurableSync (when offered) is writeDurable on this thread, or nothing when it returns false', async () => {
        const dev = await factory.make({ blockSize, blockCount: 8 });
        if (!dev.writeDurableSync) {
          await dev.close();
          return;
        }
        expect(typeof dev.writeDurable).toBe('function'); // only ever beside writeDurable
        const want: Uint8Array[] = Array.from({ length: 8 }, () => new Uint8Array(blockSize));
        try {
          await dev.writeDurable!(0, pattern(blockSize, 0, 4)); // a file device opens its O_DSYNC handle here
          want[0] = pattern(blockSize, 0, 4);
          for (let b = 1; b < 6; b++) {
            const data = pattern(blockSize, b, 4);
            if (!dev.writeDurableSync(b, data)) await dev.writeDurable!(b, data);
            want[b] = data;
            if (b === 3) {
              await dev.write(7, pattern(blockSize, 7, 4)); // an unsynced write: a device may decline now
              want[7] = pattern(blockSize, 7, 4);
            }
          }
          const two = new Uint8Array(2 * blockSize);
          two.set(pattern(blockSize, 9, 4));
          if (dev.writeDurableSync(6, two)) {
            want[6] = two.subarray(0, blockSize);
            want[7] = two.subarray(blockSize);
          }
          for (let b = 0; b < 8; b++) expect(sameBytes(await dev.read(b, 1), want[b]!)).toEqual({ equal: true });
          expect(() => dev.writeDurableSync!(8, pattern(blockSize, 8))).toThrow(expect.objectContaining({ code: 'ERR_VDE_RANGE' }));
          expect(() => dev.writeDurableSync!(7, new Uint8Array(2 * blockSize))).toThrow(expect.objectContaining({ code: 'ERR_VDE_RANGE' }));
          expect(() => dev.writeDurableSync!(0, new Uint8Array(blockSize + 1))).toThrow(expect.objectContaining({ code: 'ERR_VDE_RANGE' }));
        } finally {
          await dev.close();
        }
        expect(() => dev.writeDurableSync!(0, new Uint8Array(blockSize))).toThrow(expect.objectContaining({ code: 'ERR_VDE_CLOSED' }));
        const ro = await factory.make({ blockSize, blockCount: 2, readOnly: true });
        try {
          expect(() => ro.writeDurableSync!(0, new Uint8Array(blockSize))).toThrow(expect.objectContaining({ code: 'ERR_VDE_READ_ONLY' }));
          expect(sameBytes(await ro.read(0, 2), new Uint8Array(2 * blockSize))).toEqual({ equal: true });
        } finally {
          await ro.close();
        }
      });

      it('close waits for in-flight I/O', async () => {
        const dev = await factory.make({ blockSize, blockCount: 64 });
        const writes = Array.from({ length: 64 }, (_, b) => dev.write(b, pattern(blockSize, b, 9)));
        await dev.close();
        await expect(Promise.all(writes)).resolves.toBeDefined();
      });
    });
  }
}
