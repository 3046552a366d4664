import { InvalidArgumentError, OutOfRangeError } from './errors.js';

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

/**
 * Throws `InvalidArgumentError` unless `buffer` is a Uint8Array (a Buffer is one). Other typed arrays are refused
 * rather than reinterpreted: a device stores bytes, and a Uint16Array's elements are not bytes.
 */
export function checkBuffer(buffer: unknown, what: string): asserts buffer is Uint8Array {
  if (!(buffer instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${what} must be a Uint8Array (or a Buffer), got ${describe(buffer)}`);
  }
}

/** Throws `InvalidArgumentError` unless `options` is undefined or an object (null is not). */
export function checkOptions(options: unknown, what: string): void {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new InvalidArgumentError(`${what} must be an object, got ${describe(options)}`);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return typeof value;
}
