export { SeededRandom } from './random.js';
export {
  FaultyBlockDevice,
  SECTOR_SIZE,
  type FaultOp,
  type FaultErrorCode,
  type PowerCutMode,
  type FaultyBlockDeviceCounters,
} from './faulty-block-device.js';
export { valueFor, valueSize, metadataFor } from './values.js';
export { OutcomeModel, type KeyState } from './outcome-model.js';
export { loadAdapter, type StoreAdapter, type StoreHandle, type StoredObject, type AdapterModuleSpec } from './store-adapter.js';
export { createVdeAdapter } from './vde-adapter.js';
export { verifyAgainstModel, type VerifyResult } from './verify.js';
export {
  runCrashCampaign,
  vdeAdapterSpec,
  type CrashCampaignOptions,
  type CrashCampaignReport,
  type CrashRoundResult,
} from './crash-runner.js';
