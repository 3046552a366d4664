import type { ObjectInfo, Snapshot } from '@vde/engine';
import { AbstractIterator, AbstractKeyIterator, AbstractValueIterator } from 'abstract-level';
import { type VdeRange, compareUtf8, fromVdeKey, successor, toVdeKey } from './key-codec.js';
import { type LevelData, toBytes } from './level-store.js';
import type { SnapshotLease } from './snapshot-lease.js';

/** The private-API formats VdeLevel declares in its manifest. */
export type Format = 'buffer' | 'view' | 'utf8';

const decoder = new TextDecoder();

/** Hands bytes out in the format abstract-level asked for. */
export function formatBytes(bytes: Uint8Array, format: Format): LevelData {
  if (format === 'utf8') return decoder.decode(bytes);
  if (format === 'buffer') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return bytes;
}

/**
 * A position in a range of a snapshot. Lists keys lazily from the engine snapshot; fetches values only when
 * asked, and then for a whole `next(size)` at once. Holds its snapshot lease until `close()`.
 */
export class Cursor {
  readonly #lease: SnapshotLease;
  readonly #range: VdeRange;
  readonly #reverse: boolean;
  #start: string;
  #end: string;
  #it: AsyncIterator<ObjectInfo> | undefined;

  constructor(lease: SnapshotLease, range: VdeRange, reverse: boolean) {
    this.#lease = lease;
    this.#range = range;
    this.#reverse = reverse;
    this.#start = range.start;
    this.#end = range.end;
  }

  /** Up to `size` entries (fewer only at the end); values are undefined unless `withValues`. */
  async next(size: number, withValues: boolean): Promise<[Uint8Array, Uint8Array | undefined][]> {
    const snapshot = await this.#lease.snapshot;
    if (compareUtf8(this.#start, this.#end) >= 0) return [];
    this.#it ??= snapshot.list({ start: this.#start, end: this.#end, reverse: this.#reverse })[Symbol.asyncIterator]();
    const found: { key: Uint8Array; vdeKey: string }[] = [];
    while (found.length < size) {
      const r = await this.#it.next();
      if (r.done === true) break;
      const key = fromVdeKey(r.value.key);
      if (key) found.push({ key, vdeKey: r.value.key });
    }
    if (!withValues) return found.map((f) => [f.key, undefined]);
    const values = await Promise.all(found.map((f) => retrieveFrom(snapshot, f.vdeKey)));
    return found.map((f, i) => [f.key, values[i]]);
  }

  /** Moves to the first key at or after `target` (at or before it when reverse), within the original range. */
  seek(target: Uint8Array): void {
    const t = toVdeKey(target);
    if (this.#reverse) {
      const end = successor(t);
      this.#start = this.#range.start;
      this.#end = compareUtf8(end, this.#range.end) < 0 ? end : this.#range.end;
    } else {
      this.#start = compareUtf8(t, this.#range.start) > 0 ? t : this.#range.start;
      this.#end = this.#range.end;
    }
    this.#drop();
  }

  async close(): Promise<void> {
    this.#drop();
    await this.#lease.release();
  }

  #drop(): void {
    const it = this.#it;
    this.#it = undefined;
    if (it?.return) void it.return().catch(() => undefined);
  }
}

async function retrieveFrom(snapshot: Snapshot, vdeKey: string): Promise<Uint8Array> {
  return snapshot.retrieve(vdeKey);
}

interface IteratorFormats {
  keyEncoding: Format;
  valueEncoding: Format;
  values: boolean;
}

/** Entries of a range, from a snapshot taken when the iterator was created (or the explicit one given). */
export class VdeIterator<TDatabase> extends AbstractIterator<TDatabase, LevelData, LevelData> {
  readonly #cursor: Cursor;
  readonly #formats: IteratorFormats;

  constructor(db: TDatabase, options: object, cursor: Cursor, formats: IteratorFormats) {
    super(db, options);
    this.#cursor = cursor;
    this.#formats = formats;
  }

  async _next(): Promise<[LevelData, LevelData | undefined] | undefined> {
    const [entry] = await this._nextv(1);
    return entry;
  }

  async _nextv(size: number): Promise<[LevelData, LevelData | undefined][]> {
    const f = this.#formats;
    const entries = await this.#cursor.next(size, f.values);
    return entries.map(([k, v]) => [formatBytes(k, f.keyEncoding), v === undefined ? undefined : formatBytes(v, f.valueEncoding)]);
  }

  _seek(target: LevelData): void {
    this.#cursor.seek(toBytes(target));
  }

  async _close(): Promise<void> {
    await this.#cursor.close();
  }
}

/** Keys of a range; never reads a value. */
export class VdeKeyIterator<TDatabase> extends AbstractKeyIterator<TDatabase, LevelData> {
  readonly #cursor: Cursor;
  readonly #keyEncoding: Format;

  constructor(db: TDatabase, options: object, cursor: Cursor, keyEncoding: Format) {
    super(db, options);
    this.#cursor = cursor;
    this.#keyEncoding = keyEncoding;
  }

  async _next(): Promise<LevelData | undefined> {
    const [key] = await this._nextv(1);
    return key;
  }

  async _nextv(size: number): Promise<LevelData[]> {
    const entries = await this.#cursor.next(size, false);
    return entries.map(([k]) => formatBytes(k, this.#keyEncoding));
  }

  _seek(target: LevelData): void {
    this.#cursor.seek(toBytes(target));
  }

  async _close(): Promise<void> {
    await this.#cursor.close();
  }
}

/** Values of a range. */
export class VdeValueIterator<TDatabase> extends AbstractValueIterator<TDatabase, LevelData, LevelData> {
  readonly #cursor: Cursor;
  readonly #valueEncoding: Format;

  constructor(db: TDatabase, options: object, cursor: Cursor, valueEncoding: Format) {
    super(db, options);
    this.#cursor = cursor;
    this.#valueEncoding = valueEncoding;
  }

  async _next(): Promise<LevelData | undefined> {
    const [value] = await this._nextv(1);
    return value;
  }

  async _nextv(size: number): Promise<LevelData[]> {
    const entries = await this.#cursor.next(size, true);
    return entries.map(([, v]) => formatBytes(v!, this.#valueEncoding));
  }

  _seek(target: LevelData): void {
    this.#cursor.seek(toBytes(target));
  }

  async _close(): Promise<void> {
    await this.#cursor.close();
  }
}
