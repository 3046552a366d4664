import type { Readable } from 'node:stream';
import { ClosedError } from '@vde/block-device';
import type { ListOptions, ObjectInfo, ReadOptions } from './types.js';

/** What a snapshot needs from its engine: reads against the snapshot's own index root. */
export interface SnapshotHost {
  retrieve(key: string, options: ReadOptions): Promise<Uint8Array>;
  createReadStream(key: string, options: ReadOptions): Readable;
  exists(key: string): Promise<boolean>;
  stat(key: string): Promise<ObjectInfo>;
  list(options: ListOptions): AsyncIterable<ObjectInfo>;
  release(): void;
}

/**
 * A point-in-time, read-only view of the store. While it is open, the blocks it can read are never reused
 * (DESIGN.md invariant 4). Release it with `close()` or `await using`.
 */
export class Snapshot implements AsyncDisposable {
  readonly name: string | undefined;
  readonly generation: number;
  readonly created: Date;
  #host: SnapshotHost | undefined;

  /** @internal Snapshots come from `VirtualDiskEngine.snapshot()` / `openSnapshot(name)`. */
  constructor(host: SnapshotHost, info: { name: string | undefined; generation: number; created: Date }) {
    this.#host = host;
    this.name = info.name;
    this.generation = info.generation;
    this.created = info.created;
  }

  get closed(): boolean {
    return this.#host === undefined;
  }

  async retrieve(key: string, options: ReadOptions = {}): Promise<Uint8Array> {
    return await this.#open().retrieve(key, options);
  }

  createReadStream(key: string, options: ReadOptions = {}): Readable {
    return this.#open().createReadStream(key, options);
  }

  async exists(key: string): Promise<boolean> {
    return await this.#open().exists(key);
  }

  async stat(key: string): Promise<ObjectInfo> {
    return await this.#open().stat(key);
  }

  list(options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    return this.#open().list(options);
  }

  /** Releases the snapshot's hold on its blocks. Idempotent. */
  async close(): Promise<void> {
    const host = this.#host;
    this.#host = undefined;
    host?.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #open(): SnapshotHost {
    if (!this.#host) throw new ClosedError('the snapshot is closed');
    return this.#host;
  }
}
