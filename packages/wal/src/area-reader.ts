import type { BlockDevice } from '@vde/block-device';

/**
 * Reads the circular record area by virtual byte position (area byte = position mod areaBytes), through a window
 * of whole blocks so that a sequential scan costs one device read per `windowBlocks` blocks.
 * The caller bounds every length (at most one circle of the area plus a block).
 */
export class AreaReader {
  readonly #device: BlockDevice;
  readonly #firstBlock: number;
  readonly #areaBlocks: number;
  readonly #bs: number;
  readonly #windowBlocks: number;
  #winStart = -1; // first virtual block of the window
  #win: Uint8Array = new Uint8Array(0);

  constructor(device: BlockDevice, firstBlock: number, areaBlocks: number, windowBlocks = 64) {
    this.#device = device;
    this.#firstBlock = firstBlock;
    this.#areaBlocks = areaBlocks;
    this.#bs = device.blockSize;
    this.#windowBlocks = Math.max(1, Math.min(windowBlocks, areaBlocks));
  }

  /** `len` bytes at virtual position `pos` (a view into the window: copy it to keep it). */
  async bytes(pos: number, len: number): Promise<Uint8Array> {
    const bs = this.#bs;
    const first = Math.floor(pos / bs);
    const last = Math.floor((pos + Math.max(len, 1) - 1) / bs); // inclusive
    const winEnd = this.#winStart + this.#win.byteLength / bs;
    if (this.#winStart < 0 || first < this.#winStart || last >= winEnd) {
      const count = Math.max(last - first + 1, this.#windowBlocks);
      this.#win = await this.#readVirtual(first, count);
      this.#winStart = first;
    }
    const off = pos - this.#winStart * bs;
    return this.#win.subarray(off, off + len);
  }

  /** Reads `count` virtual blocks from virtual block `first`, wrapping at the end of the area as often as needed. */
  async #readVirtual(first: number, count: number): Promise<Uint8Array> {
    const bs = this.#bs;
    const out = new Uint8Array(count * bs);
    let done = 0;
    while (done < count) {
      const areaBlock = (first + done) % this.#areaBlocks;
      const n = Math.min(count - done, this.#areaBlocks - areaBlock);
      await this.#device.readInto(this.#firstBlock + areaBlock, out.subarray(done * bs, (done + n) * bs));
      done += n;
    }
    return out;
  }
}
