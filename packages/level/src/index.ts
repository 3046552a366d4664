export { VdeLevel, type VdeLevelOptions, type VdeEngineOptions } from './vde-level.js';
