import { describe, expect, it } from 'vitest';
import { MemoryBlockDevice } from '../src/index.js';
import { blockDeviceContract } from './contract.js';
import { sameBytes } from './helpers.js';

blockDeviceContract('MemoryBlockDevice', {
  async make({ blockSize, blockCount, readOnly }) {
    return new MemoryBlockDevice({ blockSize, blockCount, readOnly: readOnly ?? false });
  },
});

describe('MemoryBlockDevice', () => {
  it('rejects invalid block sizes', () => {
    for (const blockSize of [0, 256, 1000, 131_072, 4096.5]) {
      expect(() => new MemoryBlockDevice({ blockSize })).toThrow(expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' }));
    }
  });

  it('fromImage copies the image and image() returns a copy', async () => {
    const image = new Uint8Array(1024).fill(7);
    const dev = MemoryBlockDevice.fromImage(image, 512);
    image.fill(0);
    expect(dev.blockCount).toBe(2);
    expect(sameBytes(await dev.read(1, 1), new Uint8Array(512).fill(7))).toEqual({ equal: true });
    const copy = dev.image();
    copy.fill(1);
    expect(sameBytes(await dev.read(0, 1), new Uint8Array(512).fill(7))).toEqual({ equal: true });
    expect(() => MemoryBlockDevice.fromImage(new Uint8Array(100), 512)).toThrow(expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' }));
  });

  it('null options, a null image and sizes past 4 GiB are typed errors, not raw TypeError/RangeError', async () => {
    const invalid: unknown = expect.objectContaining({ code: 'ERR_VDE_INVALID_ARGUMENT' });
    expect(() => new MemoryBlockDevice(null as never)).toThrow(invalid);
    expect(() => MemoryBlockDevice.fromImage(null as never, 512)).toThrow(invalid);
    expect(() => MemoryBlockDevice.fromImage(new Uint8Array(512), 512, null as never)).toThrow(invalid);
    expect(() => new MemoryBlockDevice({ blockSize: 4096, blockCount: 2 ** 33 })).toThrow(invalid);
    const dev = new MemoryBlockDevice({ blockSize: 512, blockCount: 1 });
    await expect(dev.grow(2 ** 40)).rejects.toMatchObject({ code: 'ERR_VDE_FULL' });
    expect(dev.blockCount).toBe(1);
    await dev.grow(8);
    expect(dev.blockCount).toBe(8);
  });
});
