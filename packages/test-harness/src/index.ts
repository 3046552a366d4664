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
export {
  checkLinearizable,
  HistoryRecorder,
  type HistoryEvent,
  type KvOp,
  type KvResult,
  type LinearizabilityOptions,
  type LinearizabilityResult,
} from './linearizability.js';
export { CuttingDevice, DurableCuttingDevice, TypedErrorDevice } from './device-wrappers.js';
export { runPowerCutSweep, type PowerCutSweepOptions, type PowerCutSweepReport, type PowerCutResult } from './power-cut-sweep.js';
export {
  runCorruptionSweep,
  type CorruptionSweepOptions,
  type CorruptionSweepReport,
  type CorruptionTrial,
  type ImageRegion,
} from './corruption-sweep.js';
export { vdeRegions, buildVdeImage } from './vde-image.js';
export { runIoFaultSweep, type IoFaultSweepOptions, type IoFaultSweepReport, type IoFaultTrial } from './io-fault-sweep.js';
export { runLinearizabilityWorkload, type LinearizabilityWorkloadOptions } from './linearizability-workload.js';
export { runSoak, openFileDescriptors, type SoakOptions, type SoakReport, type SoakSample } from './soak-runner.js';
// The errors the runners and FaultyBlockDevice throw (the same classes as @vde/block-device's).
export { VdeError, type VdeErrorCode, InvalidArgumentError, ClosedError } from '@vde/block-device';
