export { BTree, type BTreeCheckReport, type BTreeOptions, type BTreeStats, type CachedResult, type EntryBatch, type EntryRun } from './btree.js';
export { MemoryPageStore, type PageStore } from './page-store.js';
export type { KeyRange } from './range.js';
