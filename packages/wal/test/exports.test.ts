import * as blockDevice from '@vde/block-device';
import * as wal from '@vde/wal';
import { describe, expect, it } from 'vitest';

describe('@vde/wal entry point', () => {
  it('exports the error classes the log throws, identical to @vde/block-device', async () => {
    const names = [
      'VdeError',
      'CorruptionError',
      'FormatError',
      'InvalidArgumentError',
      'TooLargeError',
      'OutOfRangeError',
      'ClosedError',
      'IoError',
      'FullError',
      'PoisonedError',
    ] as const;
    for (const name of names) expect(wal[name], name).toBe(blockDevice[name]);
    const device = new blockDevice.MemoryBlockDevice({ blockSize: 512, blockCount: 16 });
    await expect(wal.WriteAheadLog.open(device, { startBlock: 0, blockCount: 8 })).rejects.toBeInstanceOf(wal.FormatError);
    const log = await wal.WriteAheadLog.create(device, { startBlock: 0, blockCount: 8 });
    await expect(log.append(new Uint8Array(10_000))).rejects.toBeInstanceOf(wal.TooLargeError);
    await log.close();
    await expect(log.append(new Uint8Array(1))).rejects.toBeInstanceOf(wal.ClosedError);
  });
});
