export { VdeLevel, type VdeLevelOptions, type VdeEngineOptions } from './vde-level.js';
// The engine's error classes, for `err.cause instanceof …` and the constructor's InvalidArgumentError (the same
// classes as @vde/engine's).
export { VdeError, type VdeErrorCode, InvalidArgumentError, InvalidKeyError, LockedError, NotFoundError, ExistsError } from '@vde/engine';
