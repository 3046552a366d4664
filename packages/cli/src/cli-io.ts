import type { Readable, Writable } from 'node:stream';

/** Where a command reads and writes. `run()` defaults to the process's streams; tests pass their own. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
}

/** True when the stream is an interactive terminal (a progress bar may redraw on it). */
export function isTerminal(stream: Writable): boolean {
  return (stream as Writable & { isTTY?: boolean }).isTTY === true;
}

/** Writes text and resolves once the stream took it (keeps output ordered and respects backpressure). */
export function write(stream: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

/** Prints one JSON document (the machine-readable output of `--json`). */
export function writeJson(stream: Writable, value: unknown): Promise<void> {
  return write(stream, `${JSON.stringify(value, null, 2)}\n`);
}
