/**
 * The map between level keys (arbitrary bytes, the empty key included) and VDE object keys (non-empty strings
 * ordered by their UTF-8 bytes). README "Key mapping" is the normative description.
 *
 * Layout of a mapped key: the prefix character `L` (U+004C, one UTF-8 byte), then one character per level key
 * byte `b`: the code point U+0100 + b (two UTF-8 bytes, 0xC4 0x80 ... 0xC7 0xBF).
 *
 * Invariant: for level keys x and y, compare(utf8(map(x)), utf8(map(y))) = compare(x, y) in unsigned byte
 * order. It holds because every mapped byte becomes a two-byte sequence of the same length whose order follows
 * the byte, so the comparison stops at the first differing level byte, and a proper prefix stays a proper prefix.
 */

/** The first character of every VDE key that holds a level entry. */
export const KEY_PREFIX = 'L';
const BASE = 0x100;
/** The UTF-8 bytes a mapped key takes for `n` level key bytes: the prefix byte and two per level byte. */
export function mappedKeyBytes(n: number): number {
  return 1 + 2 * n;
}

/** The longest level key (in bytes) whose mapped key fits in `maxVdeKeyBytes` UTF-8 bytes. */
export function maxLevelKeyBytes(maxVdeKeyBytes: number): number {
  return Math.max(0, Math.floor((maxVdeKeyBytes - 1) / 2));
}

/** Maps level key bytes to the VDE key that stores them. */
export function toVdeKey(key: Uint8Array): string {
  let out = KEY_PREFIX;
  const CHUNK = 4096;
  for (let i = 0; i < key.length; i += CHUNK) {
    const end = Math.min(key.length, i + CHUNK);
    const codes = new Array<number>(end - i);
    for (let j = i; j < end; j++) codes[j - i] = BASE + key[j]!;
    out += String.fromCharCode(...codes);
  }
  return out;
}

/**
 * Maps a VDE key back to level key bytes, or returns undefined when the key is not in the level key space (an
 * object someone stored in the same container through the engine directly).
 */
export function fromVdeKey(vdeKey: string): Uint8Array | undefined {
  if (vdeKey.charCodeAt(0) !== 0x4c) return undefined;
  const out = new Uint8Array(vdeKey.length - 1);
  for (let i = 1; i < vdeKey.length; i++) {
    const b = vdeKey.charCodeAt(i) - BASE;
    if (b < 0 || b > 0xff) return undefined;
    out[i - 1] = b;
  }
  return out;
}

/**
 * The smallest string that sorts after `s` in UTF-8 byte order: `s` followed by U+0000 (the byte 0x00). Used to
 * turn the exclusive bound `gt` into an inclusive start and the inclusive bound `lte` into an exclusive end.
 */
export function successor(s: string): string {
  return s + '\u0000';
}

/** Inclusive start and exclusive end of a level range in VDE key space (both always set). */
export interface VdeRange {
  start: string;
  end: string;
}

/** Exclusive upper bound of the whole level key space: every mapped key is below `L` + U+0200. */
export const KEY_SPACE_END = KEY_PREFIX + '\u0200';

/** UTF-8 byte order of two strings (what the engine sorts by). */
export function compareUtf8(a: string, b: string): number {
  // For strings without surrogate pairs (all mapped keys and bounds), code unit order equals UTF-8 byte order.
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Translates level range options (already as bytes) to a VDE range. As in LevelDB and memory-level, `gte` wins
 * over `gt` and `lte` over `lt` when both are given.
 */
export function toVdeRange(range: {
  gt?: Uint8Array | undefined;
  gte?: Uint8Array | undefined;
  lt?: Uint8Array | undefined;
  lte?: Uint8Array | undefined;
}): VdeRange {
  let start = KEY_PREFIX;
  let end = KEY_SPACE_END;
  if (range.gte !== undefined) start = toVdeKey(range.gte);
  else if (range.gt !== undefined) start = successor(toVdeKey(range.gt));
  if (range.lte !== undefined) end = successor(toVdeKey(range.lte));
  else if (range.lt !== undefined) end = toVdeKey(range.lt);
  return { start, end };
}
