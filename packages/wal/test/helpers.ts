import type { BlockDevice } from '@vde/block-device';
import type { WalRecord } from '@vde/wal';

export async function collect(it: AsyncIterable<WalRecord>): Promise<WalRecord[]> {
  const out: WalRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

export function payloadOf(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (seed * 31 + i * 7) & 0xff;
  return p;
}

/** Resolves after `n` macrotask turns: enough for any microtask-driven batch to have run. */
export async function settle(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

export type Event = {
  kind: 'write-start' | 'write-end' | 'sync-start' | 'sync-end' | 'durable-start' | 'durable-end' | 'inline';
  blockNo?: number;
  blocks?: number;
};

/**
 * Forwards to `inner`, logs each write/sync start and end, and can hold syncs until `release()` (to keep a batch
 * in flight while more appends arrive).
 */
export class RecordingDevice implements BlockDevice {
  readonly events: Event[] = [];
  holdSyncs = false;
  #held: (() => void)[] = [];
  constructor(readonly inner: BlockDevice) {}
  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blockCount(): number {
    return this.inner.blockCount;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  read(b: number, c: number): Promise<Uint8Array> {
    return this.inner.read(b, c);
  }
  readInto(b: number, buf: Uint8Array): Promise<void> {
    return this.inner.readInto(b, buf);
  }
  async write(b: number, d: Uint8Array): Promise<void> {
    this.events.push({ kind: 'write-start', blockNo: b, blocks: d.byteLength / this.blockSize });
    await this.inner.write(b, d);
    this.events.push({ kind: 'write-end', blockNo: b });
  }
  async sync(): Promise<void> {
    this.events.push({ kind: 'sync-start' });
    await this.hold();
    await this.inner.sync();
    this.events.push({ kind: 'sync-end' });
  }
  /** Waits for `release()` while `holdSyncs` is set. */
  protected async hold(): Promise<void> {
    if (this.holdSyncs) await new Promise<void>((r) => this.#held.push(r));
  }
  release(): void {
    for (const r of this.#held.splice(0)) r();
  }
  /** Releases only the call held last (to let a later batch finish before an earlier one). */
  releaseLast(): void {
    this.#held.pop()?.();
  }
  get heldSyncs(): number {
    return this.#held.length;
  }
  grow(n: number): Promise<void> {
    return this.inner.grow(n);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}


/**
 * A RecordingDevice that also offers `writeDurable`, as the inner device's `write` then `sync` (so a
 * FaultyBlockDevice underneath still injects faults and models power cuts), logged as one call. `holdSyncs` holds it
 * before it starts, as it holds syncs.
 */
export class DurableRecordingDevice extends RecordingDevice {
  async writeDurable(b: number, d: Uint8Array): Promise<void> {
    this.events.push({ kind: 'durable-start', blockNo: b, blocks: d.byteLength / this.blockSize });
    await this.hold();
    await this.inner.write(b, d);
    await this.inner.sync();
    this.events.push({ kind: 'durable-end', blockNo: b });
  }
}

/**
 * A DurableRecordingDevice that also offers `writeDurableSync` over an inner device that has it (a
 * `MemoryBlockDevice`), logged as one 'inline' event. `inlineMode`: 'ok' writes, 'decline' returns false, 'fail'
 * throws an EIO; `inlineMs` makes every durable write that slow (a slow disk): the inline call busy-waits, the
 * pool's `writeDurable` waits on a timer.
 */
export class InlineDevice extends DurableRecordingDevice {
  inlineMode: 'ok' | 'decline' | 'fail' = 'ok';
  inlineMs = 0;
  override async writeDurable(b: number, d: Uint8Array): Promise<void> {
    if (this.inlineMs > 0) await new Promise((r) => setTimeout(r, this.inlineMs));
    await super.writeDurable(b, d);
  }
  writeDurableSync(b: number, d: Uint8Array): boolean {
    this.events.push({ kind: 'inline', blockNo: b, blocks: d.byteLength / this.blockSize });
    if (this.inlineMode === 'decline') return false;
    if (this.inlineMode === 'fail') throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', syscall: 'write' });
    const until = performance.now() + this.inlineMs;
    while (performance.now() < until) {
      // a slow disk holds the thread
    }
    return this.inner.writeDurableSync!(b, d);
  }
}
