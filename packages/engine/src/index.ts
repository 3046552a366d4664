export { VirtualDiskEngine } from './engine.js';
export { Snapshot } from './snapshot.js';
export type { EngineOptions, Durability } from './options.js';
export type { ObjectData } from './object-io.js';
export type {
  ObjectInfo,
  StoreOptions,
  ReadOptions,
  ListOptions,
  BatchOperation,
  SnapshotInfo,
  HealthStatus,
  HealthReport,
  ScrubOptions,
  ScrubProgress,
  ScrubProblem,
  ScrubReport,
  CheckReport,
} from './types.js';
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
  MemoryBlockDevice,
  FileBlockDevice,
  type BlockDevice,
} from '@vde/block-device';
