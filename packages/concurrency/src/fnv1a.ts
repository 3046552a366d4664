/**
 * 32-bit FNV-1a over the key's UTF-16 code units (not its UTF-8 bytes): the same mapping as the C# original, which
 * hashed `char`s. Each step XORs one 16-bit code unit into the hash, then multiplies by the FNV prime modulo 2^32.
 * For ASCII keys this equals textbook FNV-1a over bytes (fnv1a32('a') === 0xe40c292c).
 */
export function fnv1a32(key: string): number {
  // The offset basis 2166136261 as an int32 (`| 0`), so the loop works on int32s only: written as the plain
  // literal it starts as a double and the optimized loop converts on every step (about 100 instructions per
  // 10-character key). The bits, and so the result, are the same.
  let hash = 0x811c9dc5 | 0;
  for (let i = 0; i < key.length; i++) {
    hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193); // 16777619, the FNV prime
  }
  return hash >>> 0;
}
