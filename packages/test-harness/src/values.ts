/**
 * Deterministic values: the bytes of version `version` of `key` in a run seeded `seed` are a pure function of the
 * three, so a checker recomputes them instead of shipping them between processes.
 *
 * Sizes are mixed from 0 B to `maxBytes` (default 1 MiB): about 10% empty or tiny (0–16 B), 45% small (up to
 * 4 KiB), 35% medium (up to 64 KiB) and 10% large (up to `maxBytes`).
 */

/** 32-bit FNV-1a of a string's UTF-16 code units, mixed with a seed. */
export function hash32(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // final avalanche (murmur3 fmix32)
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The byte length of a version (see the distribution above). */
export function valueSize(seed: number, key: string, version: number, maxBytes = 1 << 20): number {
  const h = hash32(`${key}\u0000${version}`, seed);
  const bucket = h % 100;
  const r = Math.floor(h / 100);
  const cap = (n: number): number => Math.min(n, maxBytes);
  if (bucket < 10) return cap(r % 17);
  if (bucket < 55) return cap(r % 4097);
  if (bucket < 90) return cap(r % 65_537);
  return cap(r % (maxBytes + 1));
}

/** The bytes of a version: `valueSize(...)` bytes of a xorshift stream seeded by (seed, key, version). */
export function valueFor(seed: number, key: string, version: number, maxBytes = 1 << 20): Uint8Array {
  const size = valueSize(seed, key, version, maxBytes);
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = hash32(`${version}\u0001${key}`, seed ^ 0x5bd1e995) || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, size);
}

/** The metadata stored with a version; the checker compares it too. */
export function metadataFor(key: string, version: number): Record<string, string> {
  return { v: String(version), k: key.slice(0, 32) };
}

/** Byte equality without copying. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** Shallow equality of two string records. */
export function sameMetadata(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
