import { OutOfRangeError } from './errors.js';

/** Throws `OutOfRangeError` unless `[blockNo, blockNo + byteLength / blockSize)` is whole blocks inside the device. */
export function checkBlockRange(blockNo: number, byteLength: number, blockSize: number, blockCount: number): number {
  if (!Number.isSafeInteger(blockNo) || blockNo < 0) {
    throw new OutOfRangeError(`block number must be a non-negative integer, got ${String(blockNo)}`);
  }
  if (byteLength % blockSize !== 0) {
    throw new OutOfRangeError(`I/O of ${byteLength} bytes is not a whole number of ${blockSize}-byte blocks`);
  }
  const count = byteLength / blockSize;
  if (blockNo + count > blockCount) {
    throw new OutOfRangeError(`blocks ${blockNo}..${blockNo + count - 1} are past the end of the device (${blockCount} blocks)`);
  }
  return count;
}

export function checkCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new OutOfRangeError(`block count must be a non-negative integer, got ${String(count)}`);
  }
}
