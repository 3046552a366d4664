export type { BlockDevice } from './block-device.js';
export { isValidBlockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE } from './block-device.js';
export { MemoryBlockDevice, type MemoryBlockDeviceOptions } from './memory-block-device.js';
export { FileBlockDevice, type FileBlockDeviceOptions } from './file-block-device.js';
export { crc32, crc32Portable } from './checksum.js';
export { checkBlockRange } from './range.js';
export {
  VdeError,
  type VdeErrorCode,
  NotFoundError,
  InvalidKeyError,
  InvalidArgumentError,
  TooLargeError,
  CorruptionError,
  ClosedError,
  LockedError,
  FullError,
  AbortedError,
  FormatError,
  OutOfRangeError,
  IoError,
  ReadOnlyError,
  PoisonedError,
  ExistsError,
  SourceError,
  toIoError,
} from './errors.js';
