import { type BlockDevice, FileBlockDevice, MemoryBlockDevice, toIoError } from '@vde/block-device';

/**
 * The engine promises typed errors. Its own devices throw them already; any other `BlockDevice` a caller passes in
 * (a wrapper, a test double, a network device) may reject with a raw Node error, which this turns into a
 * `VdeError` (ENOSPC → `ERR_VDE_FULL`, anything else → `ERR_VDE_IO`, VdeErrors unchanged).
 */
export function typedDevice(device: BlockDevice): BlockDevice {
  if (device instanceof FileBlockDevice || device instanceof MemoryBlockDevice) return device;
  const typed = (what: string) => (err: unknown): never => {
    throw toIoError(err, what);
  };
  const wrapped: BlockDevice = {
    get blockSize() {
      return device.blockSize;
    },
    get blockCount() {
      return device.blockCount;
    },
    get readOnly() {
      return device.readOnly;
    },
    read: (blockNo, count) => device.read(blockNo, count).catch(typed(`read of block ${blockNo}`)),
    readInto: (blockNo, buffer) => device.readInto(blockNo, buffer).catch(typed(`read of block ${blockNo}`)),
    write: (blockNo, data) => device.write(blockNo, data).catch(typed(`write of block ${blockNo}`)),
    sync: () => device.sync().catch(typed('sync')),
    grow: (blockCount) => device.grow(blockCount).catch(typed(`growing to ${blockCount} blocks`)),
    close: () => device.close().catch(typed('close')),
  };
  const writeDurable = device.writeDurable?.bind(device);
  if (writeDurable) {
    wrapped.writeDurable = (blockNo, data) => writeDurable(blockNo, data).catch(typed(`durable write of block ${blockNo}`));
  }
  const writeDurableSync = device.writeDurableSync?.bind(device);
  if (writeDurable && writeDurableSync) {
    wrapped.writeDurableSync = (blockNo, data) => {
      try {
        return writeDurableSync(blockNo, data);
      } catch (err) {
        return typed(`durable write of block ${blockNo}`)(err);
      }
    };
  }
  // The reader table (read-only opens in other processes): without it a writer reused the blocks their checkpoint
  // still named, and a read-only open never said which checkpoint it reads.
  const setReaderMark = device.setReaderMark?.bind(device);
  if (setReaderMark) wrapped.setReaderMark = (mark) => setReaderMark(mark).catch(typed('setting the reader mark'));
  const readerMarks = device.readerMarks?.bind(device);
  if (readerMarks) wrapped.readerMarks = () => readerMarks().catch(typed('reading the reader table'));
  return wrapped;
}
