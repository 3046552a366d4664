export {
  WriteAheadLog,
  type WalRegion,
  type WalRecord,
  type WalTailInfo,
  type WalStats,
  type AppendOptions,
} from './write-ahead-log.js';
// The errors the log throws (the same classes as @vde/block-device's), so callers can test for them without a
// second import.
export {
  VdeError,
  type VdeErrorCode,
  CorruptionError,
  FormatError,
  InvalidArgumentError,
  TooLargeError,
  OutOfRangeError,
  ClosedError,
  IoError,
  FullError,
  PoisonedError,
} from '@vde/block-device';
