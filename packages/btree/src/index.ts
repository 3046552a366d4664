export { BTree, type BTreeCheckReport, type BTreeOptions, type BTreeStats, type CachedResult, type EntryBatch, type EntryRun } from './btree.js';
export { MemoryPageStore, type PageStore } from './page-store.js';
export type { KeyRange } from './range.js';
// The errors the tree throws (the same classes as @vde/block-device's), so callers can test for them without a
// second import: `err instanceof CorruptionError` for a bad page, and so on.
export {
  VdeError,
  type VdeErrorCode,
  CorruptionError,
  InvalidArgumentError,
  TooLargeError,
  ReadOnlyError,
  OutOfRangeError,
} from '@vde/block-device';
