import type { Writable } from 'node:stream';
import { isTerminal } from './cli-io.js';
import { formatBytes, formatCount } from './format.js';

const WIDTH = 28;
const REDRAW_MS = 80;

/**
 * A one-line progress bar on stderr. It draws only when stderr is a terminal; otherwise it stays silent (the
 * command prints its summary on stdout), so logs and pipes never see carriage returns.
 */
export class ProgressBar {
  readonly #stream: Writable;
  readonly #label: string;
  readonly #total: number;
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #done = 0;
  #bytes = 0;
  #lastDraw = 0;
  #drawn = false;

  constructor(stream: Writable, label: string, total: number) {
    this.#stream = stream;
    this.#label = label;
    this.#total = total;
    this.#enabled = isTerminal(stream);
  }

  /** Counts `items` more done (and `bytes` more moved) and redraws at most every 80 ms. */
  tick(items = 1, bytes = 0): void {
    this.#done += items;
    this.#bytes += bytes;
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#lastDraw < REDRAW_MS && this.#done < this.#total) return;
    this.#lastDraw = now;
    this.#draw();
  }

  /** Sets the absolute position (for callers that report totals, like scrub). */
  update(done: number, bytes: number): void {
    this.tick(done - this.#done, bytes - this.#bytes);
  }

  /** Clears the bar so the next line starts clean. */
  finish(): void {
    if (this.#enabled && this.#drawn) this.#stream.write('\r\x1b[2K');
  }

  #draw(): void {
    const fraction = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 1;
    const filled = Math.round(fraction * WIDTH);
    const seconds = (performance.now() - this.#started) / 1000;
    const rate = seconds > 0 ? ` ${formatBytes(this.#bytes / seconds)}/s` : '';
    const bar = `${'█'.repeat(filled)}${'░'.repeat(WIDTH - filled)}`;
    const pct = `${Math.floor(fraction * 100)}`.padStart(3);
    this.#stream.write(
      `\r\x1b[2K${this.#label} ${bar} ${pct}% ${formatCount(this.#done)}/${formatCount(this.#total)}${this.#bytes > 0 ? rate : ''}`,
    );
    this.#drawn = true;
  }
}
