import { CorruptionError, InvalidArgumentError, InvalidKeyError, TooLargeError } from '@vde/block-device';

export const MAX_KEY_BYTES = 1024;
export const MAX_METADATA_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Validates a key and returns its UTF-8 bytes. `limit` is the smaller of 1,024 and what the index page holds. */
export function encodeKey(key: unknown, limit: number): Uint8Array {
  if (typeof key !== 'string') throw new InvalidKeyError(`key must be a string, got ${typeof key}`);
  const n = key.length;
  if (n === 0) throw new InvalidKeyError('key must not be empty');
  if (n <= limit) {
    // ASCII keys (nearly all) encode in a plain loop: one UTF-8 byte per code unit, nothing to validate.
    const out = new Uint8Array(n);
    let i = 0;
    for (; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) break;
      out[i] = c;
    }
    if (i === n) return out;
  }
  if (!isWellFormed(key)) throw new InvalidKeyError('key holds a lone surrogate (not valid UTF-16)');
  const bytes = encoder.encode(key);
  if (bytes.byteLength > limit) {
    throw new InvalidKeyError(`key is ${bytes.byteLength} UTF-8 bytes; the limit for this container is ${limit}`);
  }
  return bytes;
}

const SCRATCH_KEY_MAX = 64;
const scratchKeys: Uint8Array[] = [];

/**
 * `encodeKey` into an array shared by every call with a key of the same length (ASCII keys of up to 64 bytes;
 * others get a fresh array). Only for a synchronous lookup that does not keep the key: the bytes change at the
 * next call. Saves an allocation per cached read.
 */
export function encodeKeyScratch(key: unknown, limit: number): Uint8Array {
  if (typeof key !== 'string') return encodeKey(key, limit);
  const n = key.length;
  if (n === 0 || n > SCRATCH_KEY_MAX || n > limit) return encodeKey(key, limit);
  const out = (scratchKeys[n] ??= new Uint8Array(n));
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) return encodeKey(key, limit);
    out[i] = c;
  }
  return out;
}

/**
 * The key in `b[start, end)`, `b` a Buffer view (of a leaf copy): an ASCII key is read as latin1 (no view, about
 * 125 ns against 160 ns for a view and `String.fromCharCode.apply`, 12-byte keys on Node 20); any other is decoded
 * as UTF-8.
 */
export function decodeKeyAt(b: Buffer, start: number, end: number): string {
  if (end - start <= 128) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return b.toString('latin1', start, end);
  }
  return decodeUtf8(b.subarray(start, end), 'index key');
}

export function decodeKey(bytes: Uint8Array): string {
  const n = bytes.length;
  if (n <= 128) {
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (bytes[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  return decodeUtf8(bytes, 'index key');
}

export function encodeUtf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decodes stored UTF-8; bytes that are not valid UTF-8 are a `CorruptionError` of `what`. */
export function decodeUtf8(bytes: Uint8Array, what = 'stored text'): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new CorruptionError(what, 'is not valid UTF-8');
  }
}

export function isWellFormed(s: string): boolean {
  const f = (s as { isWellFormed?: () => boolean }).isWellFormed;
  if (typeof f === 'function') return f.call(s);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

/** Validates metadata (string → string, at most 64 KiB encoded) and returns its encoding (JSON, UTF-8). */
const NO_METADATA = new Uint8Array(0);

export function encodeMetadata(metadata: unknown): Uint8Array {
  if (metadata === undefined) return NO_METADATA;
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new InvalidArgumentError('metadata must be an object of string values');
  }
  // A Map, Headers or URLSearchParams has no own entries: it was stored as no metadata at all, silently.
  if (typeof (metadata as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') {
    const kind = metadata.constructor?.name ?? 'iterable';
    throw new InvalidArgumentError(`metadata must be a plain object of string values, not a ${kind} (use Object.fromEntries())`);
  }
  const entries = Object.entries(metadata as Record<string, unknown>);
  if (entries.length === 0) return NO_METADATA;
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw new InvalidArgumentError(`metadata value of ${JSON.stringify(k)} must be a string`);
    if (!isWellFormed(k) || !isWellFormed(v)) throw new InvalidArgumentError('metadata holds a lone surrogate');
  }
  const bytes = encoder.encode(JSON.stringify(Object.fromEntries(entries)));
  if (bytes.byteLength > MAX_METADATA_BYTES) {
    throw new TooLargeError(`metadata is ${bytes.byteLength} bytes encoded; the limit is ${MAX_METADATA_BYTES}`);
  }
  return bytes;
}
