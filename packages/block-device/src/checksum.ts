import * as zlib from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3, the zlib polynomial) of `data`, continuing from `initial`.
 * Uses Node's native `zlib.crc32` where it exists (Node >= 20.15) and a table-driven fallback elsewhere;
 * both give the same value.
 */
export const crc32: (data: Uint8Array, initial?: number) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function'
    ? (data, initial = 0) =>
        // Node 20's zlib.crc32 returns 0, not `initial`, for an empty view over a zero-length ArrayBuffer
        // (`new TextEncoder().encode('')`): continuing a running CRC with one would reset it.
        data.byteLength === 0 ? initial >>> 0 : (zlib as unknown as { crc32(d: Uint8Array, v: number): number }).crc32(data, initial)
    : crc32Portable;

let table: Uint32Array | undefined;

/** The portable CRC-32; exported so tests can check it against the native one. */
export function crc32Portable(data: Uint8Array, initial = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
