// ENGINE BUG REPRO (not a test; run after `npx tsc -b packages/test-harness`):
//   node packages/test-harness/repro/superblock-rollback.mjs
// One flipped bit in the newest superblock makes open() fall back to the older superblock silently. The log was
// truncated by the newer checkpoint, so every write acknowledged between the two checkpoints is gone, with no error.
// Expected (DESIGN.md invariant 6, FORMAT.md): ERR_VDE_CORRUPT when the fallback checkpoint cannot be rolled forward
// to the state the log proves was reached (the log's start LSN is past the older superblock's checkpoint LSN).
import { MemoryBlockDevice, VirtualDiskEngine } from '../../engine/dist/index.js';

const dev = new MemoryBlockDevice({ blockSize: 4096 });
const vde = await VirtualDiskEngine.open(dev, { walSizeBytes: 256 * 1024 });
await vde.store('a', new Uint8Array(100).fill(1));
await vde.checkpoint();
await vde.store('b', new Uint8Array(100).fill(2)); // acknowledged (durability 'sync')
await vde.close(); // checkpoint: the newest superblock now covers 'b', the log is truncated
const image = dev.image();
const newest = image[16] > image[4096 + 16] ? 0 : 4096;
image[newest + 100] ^= 1; // one bit of the newest superblock's checkpoint time (its CRC now fails)
const reopened = await VirtualDiskEngine.open(MemoryBlockDevice.fromImage(image, 4096), { readOnly: true });
const b = await reopened.exists('b');
console.log(b ? 'ok: b survived' : 'BUG: acknowledged object "b" vanished without an error (silent rollback to the older checkpoint)');
await reopened.close();
process.exitCode = b ? 0 : 1;
