export { run } from './run.js';
export type { CliIo } from './cli-io.js';
