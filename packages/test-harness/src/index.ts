export { SeededRandom } from './random.js';
export {
  FaultyBlockDevice,
  SECTOR_SIZE,
  type FaultOp,
  type FaultErrorCode,
  type PowerCutMode,
  type FaultyBlockDeviceCounters,
} from './faulty-block-device.js';
