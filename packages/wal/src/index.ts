export {
  WriteAheadLog,
  type WalRegion,
  type WalRecord,
  type WalTailInfo,
  type WalStats,
  type AppendOptions,
} from './write-ahead-log.js';
