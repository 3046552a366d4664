/**
 * At most `limit` device reads in flight at once per engine (index pages and object data share them); the others
 * wait in a queue, first come, first served. Each read submitted to libuv's thread pool costs the event loop more
 * the longer the pool's queue is, and the engine used to submit as many as its callers asked for in one synchronous
 * run: 10,000 concurrent `retrieve`s of 8 KiB objects whose index paths were cached held a 1 ms timer back 810-900 ms
 * (1,000 of them 50-80 ms), and a `batch()` of 10,000 puts into an index of 1,000,000 keys that was not cached
 * 470-880 ms. The same 20,000 random 4 KiB reads of a file, without the engine: all at once 440-560 ms in all with a
 * 360-500 ms stall; 64 at a time 265-350 ms, worst gap 6-11 ms.
 *
 * A read holds its slot only while the device reads (never while it waits for anything else), so the queue cannot
 * deadlock. A slot that frees goes straight to the first read waiting.
 */
export const READS_IN_FLIGHT = 64;

export class ReadSlots {
  #inFlight = 0;
  #waiting: (() => void)[] = [];
  /** The first read still waiting is #waiting[#next] (the ones before it have their slot). */
  #next = 0;

  constructor(readonly limit = READS_IN_FLIGHT) {}

  /**
   * Runs `read` (a device read) once a slot is free. With a slot free it returns the read's own promise: a retrieve
   * pays no extra turn of the microtask queue (an async wrapper here cost 6% of 64 readers' retrieves of 8 KiB).
   */
  run<T>(read: () => Promise<T>): Promise<T> {
    if (this.#inFlight >= this.limit) return this.#queued(read);
    this.#inFlight++;
    let p: Promise<T>;
    try {
      p = read();
    } catch (err) {
      this.#release();
      throw err;
    }
    p.then(this.#released, this.#released);
    return p;
  }

  async #queued<T>(read: () => Promise<T>): Promise<T> {
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await read();
    } finally {
      this.#release();
    }
  }

  readonly #released = (): void => this.#release();

  #release(): void {
    const next = this.#waiting[this.#next];
    if (next === undefined) {
      this.#inFlight--;
      return;
    }
    // The slot goes to `next` (#inFlight stays); the queue drops what it has handed out once that is half of it.
    if (++this.#next === this.#waiting.length) {
      this.#waiting = [];
      this.#next = 0;
    } else if (this.#next >= 1024 && this.#next * 2 >= this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#next);
      this.#next = 0;
    }
    next();
  }
}
