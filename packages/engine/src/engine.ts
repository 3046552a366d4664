import * as fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BitmapAllocator, type Extent } from '@vde/allocator';
import {
  AbortedError,
  type BlockDevice,
  ClosedError,
  CorruptionError,
  ExistsError,
  FileBlockDevice,
  FormatError,
  FullError,
  InvalidArgumentError,
  NotFoundError,
  PoisonedError,
  ReadOnlyError,
  TooLargeError,
  VdeError,
  crc32,
  isValidBlockSize,
  toIoError,
} from '@vde/block-device';
import { BTree, type EntryRun, type KeyRange } from '@vde/btree';
import { AsyncRwLock, StripedWriteLock } from '@vde/concurrency';
import { WriteAheadLog } from '@vde/wal';
import { onAbort } from './abort-watch.js';
import { copyOut, getU64, newBytes, viewOf } from './bytes.js';
import { MAX_KEY_BYTES, decodeKey, decodeKeyAt, encodeKey, encodeKeyScratch, encodeMetadata, encodeUtf8, isWellFormed } from './keys.js';
import { LOG_BATCH, LOG_DEL, LOG_MARK, LOG_PUT, type LogOp, decodeLogRecord, encodeBatch, encodeDel, encodePut } from './log-records.js';
import { type DeferredEntry, type NamedSnapshotRecord, decodeMeta, encodeMeta, metaChecksum, metaExtentCount, metaExtentEntry, metaMatches } from './meta.js';
import { ObjectIo, type ObjectData, type WrittenObject, normalizeData } from './object-io.js';
import { type EngineOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { DevicePageStore, ReadOnlyPageStore } from './page-store.js';
import { ReadSlots } from './read-slots.js';
import { Reclaimer } from './reclaimer.js';
import {
  INDIRECT_BYTES,
  KIND_INDIRECT,
  objectCrc,
  wr32,
  type ObjectRecord,
  decodeIndirect,
  encodeIndirect,
  etagOf,
  writeRecord,
  parseMetadata,
  recordBytesFor,
  objectInfoAt,
  recordKind,
  type DataArea,
  type RecordFields,
  verifiedInlineData,
} from './record.js';
import { Snapshot, type SnapshotHost } from './snapshot.js';
import { rejectedSoon, settledSoon, turnIfSpent } from './turns.js';
import { typedDevice } from './typed-device.js';
import { type Superblock, creationMarkerBlockSize, decodeSuperblock, encodeCreationMarker, encodeSuperblock, hasMagic, peekBlockSize } from './superblock.js';
import type {
  BatchOperation,
  CheckReport,
  HealthReport,
  ListOptions,
  ObjectInfo,
  ReadOptions,
  ScrubOptions,
  ScrubReport,
  SnapshotInfo,
  StoreOptions,
} from './types.js';

const WAL_START = 2;
const INITIAL_DATA_BLOCKS = 64;
/**
 * Free blocks kept in hand for index page splits, which allocate synchronously: the slack on top of the counted
 * reserve (see #reserveBlocks). A container limited to fewer than 16 times this by maxSizeBytes keeps a sixteenth
 * of its blocks (at least MIN_HEADROOM_BLOCKS) and counts each write's index change in full instead.
 */
const HEADROOM_BLOCKS = 256;
const MIN_HEADROOM_BLOCKS = 16;
/** Tries of a read-only open that meets what looks like damage (a writer may have moved on under it). */
const READ_ONLY_OPEN_ATTEMPTS = 10;
/** Index pages one write in flight may still dirty or create when it is applied (splits up a deep path, and more). */
const WRITER_HEADROOM_BLOCKS = 4;
/** A delete's own index change: the pages of its path dirtied, and merges. */
const DELETE_HEADROOM_BLOCKS = 32;
/** Meta blob entries a delete or batch with deletes counts on top of 3 per delete (see #metaEntriesFor). */
const DELETE_META_ENTRIES = 8;
/** Dirty index pages below which an automatic checkpoint does not flush ahead (#runPreflush). */
const PREFLUSH_MIN_PAGES = 2;
/** Replaced blocks below which no checkpoint is started for them alone (a small container would checkpoint often). */
const REPLACED_MIN_BLOCKS = 1024;
/**
 * Extents a checkpoint frees per turn of the event loop once its superblock is durable (the pages and versions the
 * checkpoint before it replaced). Random stores into an index of 1,000,000 keys freed 16,000-19,000 single pages at
 * each automatic checkpoint, in one synchronous run of 7-107 ms.
 */
const FREE_TURN_EXTENTS = 2048;

interface CheckpointExtra {
  addSnapshot?: string;
  holdSnapshot?: boolean;
  /** A named snapshot was deleted: the checkpoint records a change the log has no record of (see LOG_MARK). */
  snapshotDeleted?: boolean;
}

interface CheckpointResult {
  generation: number;
  root: number;
  /** Objects in the checkpointed tree. */
  objects: number;
}

/** One index change: a put when `value` is set, else a delete. */
interface IndexChange {
  key: string;
  keyBytes: Uint8Array;
  value?: Uint8Array;
}

interface PreparedPut extends IndexChange {
  key: string;
  keyBytes: Uint8Array;
  value: Uint8Array;
  record: ObjectRecord;
  /** The PUT log payload when `value` is a view of it (encoded once). */
  payload?: Uint8Array;
  /** Blocks this version owns: its extents and its indirect run. */
  owned: Extent[];
}

/**
 * VirtualDiskEngine: an object store in one container.
 *
 * Concurrency (DESIGN.md): every store/delete/batch holds the checkpoint gate shared and its keys' stripes; a
 * checkpoint holds the gate exclusively. Reads take no lock; they register with the reclaimer so the blocks they
 * may read are not reused under them.
 *
 * Critical sections split by an await (each is safe because the key's stripe is held throughout):
 *  - store/delete: index lookup of the previous version → data writes → log append → index apply. Other keys may
 *    change the index in between; this key cannot.
 *  - checkpoint: every step runs under the exclusive gate, so no store is between its log append and its index apply.
 */
export class VirtualDiskEngine implements AsyncDisposable {
  readonly #opts: ResolvedOptions;
  readonly #device: BlockDevice;
  readonly #stripes: StripedWriteLock;
  readonly #gate = new AsyncRwLock();
  readonly #reclaimer = new Reclaimer();
  /** The trees of open snapshots (and of closed ones whose reads may still run): their generation, and whether open. */
  readonly #snapshotScopes = new WeakMap<BTree, { generation: number; open: boolean }>();
  readonly #io: ObjectIo;
  readonly #pageStore: DevicePageStore;
  readonly #named = new Map<string, NamedSnapshotRecord>();
  /**
   * Blocks of streams being written ahead of the gate (see store), one list per store, each kept up to date in the
   * same synchronous step as the allocation or free: no log record or index entry refers to them yet, so a
   * checkpoint records them as free (a crash then leaves no leak), and check() counts them as a store's.
   */
  readonly #privateExtents = new Set<Extent[]>();
  /**
   * The runs of the durable checkpoint's meta blob, the first one first (the superblock names it; a version 2 blob
   * lists the others, FORMAT.md "Meta blob, version 2"). Empty before the first checkpoint.
   */
  #metaRuns: Extent[] = [];
  /** Blocks of #metaRuns. */
  #metaRunBlocks = 0;
  /** Meta blob entries of deletes admitted by #ensureDeleteRoom and not yet applied (or failed). */
  #deleteEntriesInFlight = 0;
  /** The next meta blob's size (#metaBlocksNeeded) when the last checkpoint was durable (see #metaGrown). */
  #metaAtCheckpoint = 0;
  /** Stores, deletes and batches admitted (past their first check) and not yet settled: close() waits for them. */
  #openWrites = 0;
  #writesDrained: (() => void) | undefined;
  /** Names of snapshots whose `createSnapshot` is in progress (taken, so a second creation is ERR_VDE_EXISTS). */
  readonly #creatingSnapshots = new Set<string>();
  #allocator!: BitmapAllocator;
  #wal!: WriteAheadLog;
  #index!: BTree;
  #sb!: Superblock;
  /** Where object blocks may lie (see DataArea). */
  readonly #area: DataArea;
  #objectCount = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #poisoned: PoisonedError | undefined;
  #checksumErrors = 0;
  #checkpoints = 0;
  #preflushes = 0;
  /** Blocks of replaced or deleted versions deferred since the last checkpoint began (see #afterWrite). */
  #replacedBlocks = 0;
  #checkpointTail: Promise<unknown> = Promise.resolve();
  #autoCheckpoint: Promise<unknown> | undefined;
  #walReserved = 0;
  /** Writes (stores, deletes, batches) between their log reservation and its release: 1 means a lone writer. */
  #writers = 0;
  /** Index pages the batches in flight (and a replayed record) may create or dirty, on top of a writer's headroom. */
  #batchHeadroom = 0;
  /** The slack of #reserveBlocks: HEADROOM_BLOCKS, or less in a container that maxSizeBytes keeps small. */
  readonly #headroom: number;
  /**
   * Set while index changes are applied with awaits in between (#applySlow); readers wait for it. It settles once
   * every such apply that had started when it was set has finished, and is cleared only when none is left.
   */
  #applyBarrier: Promise<void> | undefined;
  /** The #applySlow calls in progress. */
  #slowApplies = 0;
  /**
   * Per key, the latest write called on it that may wait before it asks for its stripe (a stream, an object too large
   * to be inline, a small store waiting for log space, every delete and batch): settles once that write has asked
   * for (a delete or batch: holds) its stripe, or has failed. A write to the key called after
   * it waits for it, holding nothing, before it takes log space or the gate; writes to one key then ask for the
   * stripe (first come, first served) in the order they were called.
   */
  readonly #aheadOfStripe = new Map<string, Promise<void>>();
  /**
   * Batches between their call and the moment they hold their stripes, the other half of #aheadOfStripe: a write to
   * one of their keys called meanwhile waits for `held`. Kept apart so that a bulk load of large batches, one after
   * another, pays one set entry per batch instead of a map entry per key; the key set is built only when a later
   * write has to look.
   */
  readonly #waitingBatches = new Set<{ readonly ops: readonly { readonly key: string }[]; keys?: Set<string>; readonly held: Promise<void> }>();
  #growing: Promise<void> | undefined;
  /** Blocks that the callers of the growth in flight asked to allocate, and the largest growth one of them needs. */
  #growDemand = 0;
  #growFloor = 0;
  /** Whether the growth in flight has been sized (later callers wait for it, then ask again if need be). */
  #growSized = false;
  #maxKeyBytes = MAX_KEY_BYTES;
  readonly #path: string | undefined;

  private constructor(device: BlockDevice, opts: ResolvedOptions, path: string | undefined) {
    this.#device = device;
    this.#opts = opts;
    this.#path = path;
    this.#stripes = new StripedWriteLock(opts.stripeCount);
    const reads = new ReadSlots();
    this.#pageStore = new DevicePageStore(device, () => this.#allocator, reads);
    // One object for every record decode (a read's hot path): its bounds follow the superblock and the device.
    const sbOf = (): Superblock | undefined => this.#sb; // undefined until format or load sets it
    this.#area = {
      get first(): number {
        const sb = sbOf();
        return sb ? sb.walStart + sb.walBlocks : 0;
      },
      get end(): number {
        return device.blockCount;
      },
      blockSize: device.blockSize,
    };
    const maxBlocks = Math.floor(opts.maxSizeBytes / device.blockSize);
    this.#headroom = Math.min(HEADROOM_BLOCKS, Math.max(MIN_HEADROOM_BLOCKS, Math.floor(maxBlocks / 16)));
    this.#io = new ObjectIo({
      device,
      reads,
      allocateData: (blocks, _contiguous, track) => this.#allocateData(blocks, track),
      freeUnreferenced: (extents, track) => {
        if (extents.length > 0) this.#allocator.free(extents);
        if (track) track.length = 0;
      },
      dataArea: () => this.#area,
      verifyChecksums: opts.verifyChecksums,
      maxObjectBytes: maxBlocks * device.blockSize,
      noteCorruption: () => {
        this.#checksumErrors++;
      },
    });
  }

  /**
   * Opens (or creates) a container. `target` is a file path, a `file:` URL (as `node:fs` takes) or any
   * `BlockDevice` (e.g. a `MemoryBlockDevice`).
   * After a crash, open replays the log: every acknowledged store is there, nothing unacknowledged is half there.
   */
  static async open(target: string | URL | BlockDevice, options?: EngineOptions): Promise<VirtualDiskEngine> {
    const opts = resolveOptions(options);
    if (typeof target === 'string') return VirtualDiskEngine.#openFile(target, opts);
    if (target instanceof URL) return VirtualDiskEngine.#openFile(pathOfUrl(target), opts);
    if (target === null || typeof target !== 'object' || typeof target.read !== 'function') {
      throw new InvalidArgumentError('open() takes a file path, a file: URL or a BlockDevice');
    }
    return VirtualDiskEngine.#openDevice(typedDevice(target), opts, undefined);
  }

  static async #openFile(path: string, opts: ResolvedOptions): Promise<VirtualDiskEngine> {
    if (path.length === 0) throw new InvalidArgumentError('path must not be empty');
    if (path.includes('\0')) throw new InvalidArgumentError(`path must not contain a NUL character: ${JSON.stringify(path)}`);
    let size: number | undefined;
    try {
      const st = await fs.stat(path);
      if (st.isDirectory()) throw new FormatError(`${path} is a directory, not a VDE container`);
      size = st.size;
    } catch (err) {
      if (err instanceof FormatError) throw err;
      if ((err as { code?: string }).code !== 'ENOENT') throw toIoError(err, `opening ${path}`);
    }
    if (size === undefined || size === 0) {
      if (!opts.create || opts.readOnly) {
        if (size === 0) throw new FormatError(`${path} is empty, not a VDE container`);
        // With readOnly, `create` (true by default) cannot apply: saying "pass create: true" sent users in a circle.
        throw new NotFoundError(`no container at ${path} (${opts.readOnly ? 'a read-only open does not create one' : 'pass create: true to make one'})`);
      }
      const device = await FileBlockDevice.open(path, { create: true, blockSize: opts.blockSize });
      if (!device.created && device.fileSizeBytes > 0) {
        // Another open created and filled it between our look and our lock: open what is there now.
        await device.close();
        return VirtualDiskEngine.#openFile(path, opts);
      }
      // A file this open created is removed again if the open fails (maxSizeBytes too small, no space), while the
      // writer lock is still held: no other writer can have it open. Only then: `created` is decided by the
      // exclusive create under the lock, not by the look above (another open may have created it since).
      return VirtualDiskEngine.#openDevice(device, opts, path, device.created);
    }
    if (!opts.readOnly) {
      let blockSize: number;
      try {
        blockSize = await detectBlockSize(path);
      } catch (err) {
        if (!(err instanceof FormatError || err instanceof CorruptionError)) throw err;
        // Another process may be creating this container right now: it holds the lock while it writes the first
        // checkpoint, and that is ERR_VDE_LOCKED, not a damaged file. Holding the lock, look again.
        const probe = await FileBlockDevice.open(path, { readOnly: false });
        try {
          blockSize = await detectBlockSize(path);
        } finally {
          await probe.close();
        }
      }
      const device = await FileBlockDevice.open(path, { blockSize, readOnly: false });
      await refuseCutShort(device, path);
      return VirtualDiskEngine.#openDevice(device, opts, path);
    }
    // A read-only open beside a live writer may read a superblock, then find that the writer has checkpointed and
    // reused the log since: it looks like damage (the log no longer follows the checkpoint). Read it again.
    for (let attempt = 1; ; attempt++) {
      try {
        const blockSize = await detectBlockSize(path);
        const device = await FileBlockDevice.open(path, { blockSize, readOnly: true });
        await refuseCutShort(device, path);
        return await VirtualDiskEngine.#openDevice(device, opts, path);
      } catch (err) {
        if (!(err instanceof CorruptionError) || attempt >= READ_ONLY_OPEN_ATTEMPTS) throw err;
        // About 2 s in all: a writer that checkpoints every few milliseconds met all of 5 tries 10-50 ms apart.
        await new Promise((r) => setTimeout(r, Math.min(400, 10 * 2 ** attempt)));
      }
    }
  }

  static async #openDevice(device: BlockDevice, opts: ResolvedOptions, path: string | undefined, created = false): Promise<VirtualDiskEngine> {
    const engine = new VirtualDiskEngine(device, opts, path);
    try {
      if (device.blockCount === 0) {
        if (!opts.create || opts.readOnly) throw new FormatError('the device is empty, not a VDE container');
        await engine.#format();
      } else if (await engine.#creationInterrupted()) {
        // A crash (or failure) while an open created it: no superblock was ever written, so no open ever returned
        // and nothing was stored. It is made again, as a missing file would be.
        if (!opts.create || opts.readOnly) {
          throw new FormatError(`${path ?? 'the device'} is being created, or its creation was interrupted: a writable open with create: true makes it again`);
        }
        await engine.#format();
      } else {
        await engine.#load();
      }
    } catch (err) {
      if (created && path !== undefined) await fs.rm(path, { force: true }).catch(() => undefined);
      await device.close().catch(() => undefined);
      throw err;
    }
    return engine;
  }

  // ─── open: format and recovery ────────────────────────────────────────────────────────────────────────────

  async #format(): Promise<void> {
    const bs = this.#device.blockSize;
    const walBlocks = Math.max(16, Math.ceil(this.#opts.walSizeBytes / bs));
    const needed = WAL_START + walBlocks + INITIAL_DATA_BLOCKS;
    if (needed * bs > this.#opts.maxSizeBytes) {
      throw new FullError(`maxSizeBytes ${this.#opts.maxSizeBytes} is too small for a ${this.#opts.walSizeBytes}-byte log`);
    }
    // A device left by an interrupted creation may already be larger: the allocator covers all of it.
    const blockCount = Math.max(needed, this.#device.blockCount);
    await this.#device.grow(blockCount);
    // Marks the container as being created until the first superblock (A, in the same block) replaces the marker:
    // a crash in between leaves a file the next open recognizes and makes again (see #creationInterrupted).
    await this.#device.write(0, encodeCreationMarker(bs));
    await this.#device.sync();
    if (this.#device instanceof FileBlockDevice) {
      await this.#checkDiskRoom(walBlocks * bs);
      await this.#preallocate(WAL_START, walBlocks);
    }
    this.#allocator = new BitmapAllocator(blockCount);
    this.#allocator.reserve({ start: 0, count: WAL_START + walBlocks });
    this.#wal = await WriteAheadLog.create(this.#device, { startBlock: WAL_START, blockCount: walBlocks });
    this.#index = BTree.create(this.#pageStore, { cacheSizeBytes: this.#opts.cacheSizeBytes });
    this.#maxKeyBytes = Math.min(MAX_KEY_BYTES, this.#index.maxKeyBytes, this.#index.maxEntryBytes - INDIRECT_BYTES);
    const now = Date.now();
    this.#sb = {
      version: 1,
      blockSize: bs,
      generation: 0,
      checkpointLsn: 0,
      blockCount,
      walStart: WAL_START,
      walBlocks,
      indexRoot: 0,
      metaStart: 0,
      metaBlocks: 0,
      metaLength: 0,
      metaCrc: 0,
      objectCount: 0,
      createdMs: now,
      checkpointMs: now,
    };
    await this.#checkpointLocked({});
  }

  /**
   * Whether the device holds a creation marker and no superblock: a creation that never wrote its first checkpoint
   * (which writes superblock A over the marker, so a marker beside a valid superblock cannot occur).
   */
  async #creationInterrupted(): Promise<boolean> {
    const dev = this.#device;
    if (creationMarkerBlockSize(await dev.read(0, 1)) !== dev.blockSize) return false;
    // Anything that looks like superblock B, even a damaged one, is left to #load: only a file that never had a
    // superblock is made again.
    return dev.blockCount < 2 || !hasMagic(await dev.read(1, 1));
  }

  /**
   * A new container's log is written out at creation (#preallocate): a log larger than the disk's free space would
   * fill the disk (every other writer on it failing meanwhile) before failing. Refused first, when statfs can tell.
   */
  async #checkDiskRoom(bytes: number): Promise<void> {
    if (this.#path === undefined) return;
    let free: number;
    try {
      const st = await fs.statfs(this.#path);
      free = st.bavail * st.bsize;
    } catch {
      return; // No statfs: the writes themselves fail with ERR_VDE_FULL on a full disk.
    }
    if (bytes > free) {
      throw new FullError(`the disk has ${free} bytes free, too few for a ${bytes}-byte log: lower walSizeBytes (default 32 MiB)`);
    }
  }

  /**
   * Writes zeros over a sparse range so the file system allocates it now. The log is rewritten in place for the
   * container's whole life; without this, every first write to a log block also allocates it, and each fdatasync
   * then has to commit file-system metadata too.
   */
  async #preallocate(start: number, blocks: number): Promise<void> {
    const bs = this.#device.blockSize;
    const per = Math.max(1, Math.floor((1 << 20) / bs));
    const zeros = new Uint8Array(per * bs);
    for (let b = 0; b < blocks; b += per) {
      const n = Math.min(per, blocks - b);
      await this.#device.write(start + b, n === per ? zeros : zeros.subarray(0, n * bs));
    }
  }

  async #load(): Promise<void> {
    const dev = this.#device;
    const [a, b] = await Promise.all([dev.read(0, 1), dev.blockCount > 1 ? dev.read(1, 1) : Promise.resolve(new Uint8Array(0))]);
    const sa = decodeSuperblock(a, 'A');
    const sbB = decodeSuperblock(b, 'B');
    const sb = !sa ? sbB : !sbB ? sa : sa.generation > sbB.generation ? sa : sbB;
    if (!sb) {
      if (hasMagic(a) || hasMagic(b)) throw new CorruptionError('superblock', 'both superblock copies are damaged');
      throw new FormatError('not a VDE container (no superblock)');
    }
    if (sb.blockSize !== dev.blockSize) {
      throw new FormatError(`the container's block size is ${sb.blockSize}, the device's is ${dev.blockSize}`);
    }
    if (dev.blockCount < sb.blockCount) {
      throw new CorruptionError('container', `the file holds ${dev.blockCount} blocks but the checkpoint covers ${sb.blockCount} (truncated)`);
    }
    this.#sb = sb;
    const { bytes: metaBytes, runs: metaRuns } = await this.#readMeta(sb);
    if (!metaMatches(metaBytes, sb.metaCrc)) throw new CorruptionError('checkpoint meta blob', 'checksum mismatch');
    const meta = decodeMeta(metaBytes, sb.blockCount, sb.generation);
    if ((sb.version === 2) !== (meta.extents !== undefined)) {
      throw new CorruptionError('checkpoint meta blob', `a version ${meta.extents ? 2 : 1} blob under a version ${sb.version} superblock`);
    }
    this.#metaRuns = metaRuns;
    this.#metaRunBlocks = runBlocks(metaRuns);
    try {
      this.#allocator = BitmapAllocator.load(meta.allocatorImage);
    } catch (err) {
      if (err instanceof VdeError) throw err;
      throw new CorruptionError('allocator bitmap', String(err));
    }
    if (this.#allocator.blockCount !== sb.blockCount) {
      throw new CorruptionError('allocator bitmap', `covers ${this.#allocator.blockCount} blocks, the superblock says ${sb.blockCount}`);
    }
    this.#checkHeldBlocks(sb);
    this.#checkDeferred(sb, [...meta.deferred, ...(meta.replacedMeta ?? [])]);
    if (dev.blockCount > sb.blockCount) this.#allocator.grow(dev.blockCount);
    for (const s of meta.snapshots) {
      this.#named.set(s.name, s);
      this.#reclaimer.holdSnapshot(s.generation);
    }
    // The other superblock, one generation older, names the meta blob this checkpoint deferred (see restore).
    const previous = sb === sa ? sbB : sa;
    const previousMeta =
      previous && previous.generation === sb.generation - 1 && previous.metaBlocks > 0
        ? { start: previous.metaStart, count: previous.metaBlocks, generation: previous.generation }
        : undefined;
    this.#reclaimer.restore(meta.deferred, meta.replacedMeta ? undefined : previousMeta, meta.replacedMeta);
    // A reader's mark is the oldest generation it may read: the checkpoint, or a named snapshot it may open (the
    // writer holds a named snapshot only until it is deleted there, which this open would not see).
    const oldestNamed = oldestGeneration(meta.snapshots);
    if (this.#opts.readOnly) await this.#device.setReaderMark?.(Math.min(sb.generation, oldestNamed));
    else await this.#refreshReaders();
    this.#reclaimer.setDurableNamedMin(oldestNamed);
    this.#applyFrees(this.#reclaimer.takeEligible(sb.generation + 1));
    this.#objectCount = sb.objectCount;
    const store = this.#opts.readOnly ? new ReadOnlyPageStore(this.#pageStore, dev.blockCount) : this.#pageStore;
    this.#index = await BTree.open(store, sb.indexRoot, { cacheSizeBytes: this.#opts.cacheSizeBytes });
    this.#maxKeyBytes = Math.min(MAX_KEY_BYTES, this.#index.maxKeyBytes, this.#index.maxEntryBytes - INDIRECT_BYTES);
    try {
      this.#wal = await WriteAheadLog.open(dev, { startBlock: sb.walStart, blockCount: sb.walBlocks });
    } catch (err) {
      // A valid superblock says this is a container and where its log is: a log without a readable header there
      // is damage (ERR_VDE_CORRUPT), not "not a container".
      if (err instanceof FormatError) throw new CorruptionError('write-ahead log', `damaged header (${err.message})`);
      throw err;
    }
    // The log is truncated only after a checkpoint's superblock is durable. If it no longer holds the records right
    // after this checkpoint, a newer checkpoint existed and its superblock is damaged: falling back to this one
    // would silently lose acknowledged writes.
    if (this.#wal.headLsn > sb.checkpointLsn + 1) {
      throw new CorruptionError(
        'superblock',
        `the newest checkpoint is damaged (the log starts at record ${this.#wal.headLsn}, the surviving superblock ${sb === sa ? 'A' : 'B'} needs ${sb.checkpointLsn + 1})`,
      );
    }
    // The checkpoint covers records up to checkpointLsn, and the log is truncated only up to it: a log that ends
    // before it would hand out LSNs the next replay skips (acknowledged writes silently lost).
    if (this.#wal.lastLsn < sb.checkpointLsn) {
      throw new CorruptionError(
        'write-ahead log',
        `the log ends at record ${this.#wal.lastLsn}, before the checkpoint's record ${sb.checkpointLsn}`,
      );
    }
    const endLsn = await this.#verifyLog(sb.checkpointLsn);
    // Records after endLsn (their data never reached the disk) must leave the log before anything is appended: the
    // next record would follow them and prove them durable, and the recovery after the next crash would then take
    // one for damage in the middle of the log (ERR_VDE_CORRUPT, the container no longer opened) or bring back a
    // store that was never acknowledged, reading as ERR_VDE_CORRUPT. The recovery checkpoint below covers the log up
    // to its last record, and truncates it.
    const droppedTail = this.#wal.lastLsn > endLsn;
    if (endLsn === sb.checkpointLsn && (!droppedTail || this.#opts.readOnly)) return;
    for await (const rec of this.#wal.replay(sb.checkpointLsn)) {
      if (rec.lsn > endLsn) break;
      const ops = decodeLogRecord(rec.type, rec.payload, rec.lsn);
      if (!this.#opts.readOnly) {
        // The pages this record's index changes create must be free, as they were when it was first applied: a
        // batch of 100,000 puts needs thousands. The container grows for them as it did then; where it cannot (at
        // maxSizeBytes), the first apply found them free in the same state, and replay goes on.
        let bytes = 0;
        for (const op of ops) bytes += op.key.byteLength + (op.type === 'put' ? op.record.byteLength : 0) + 10;
        const need = this.#createdPages(bytes) + this.#headroom;
        if (this.#allocator.freeCount < need) {
          await this.#ensureFree(need, 1).catch((err: unknown) => {
            if (!(err instanceof FullError)) throw err;
          });
        }
      }
      for (const op of ops) await this.#replayOp(op);
    }
    if (!this.#opts.readOnly) {
      try {
        await this.#runCheckpoint({});
      } catch (err) {
        // A full file system (or container): the replayed log stays the record of what it holds, as it was before
        // the open, and the engine opens (objects readable, deletes possible once the log has room); the next
        // checkpoint writes the index. A failure that poisoned the engine still fails the open, and so does one that
        // would leave dropped records in the log (see droppedTail): free disk space and open again.
        if (!(err instanceof FullError) || this.#poisoned || droppedTail) throw err;
      }
    }
  }

  /**
   * Replay pass 1. A store writes its data blocks before its log record, and one fsync makes both durable, so a
   * crash can keep an unsynced log record while its unsynced data was lost or torn. Each put's data is therefore
   * checked against its checksum: the first record whose data fails is where the durable log ends (it and all later
   * records were never acknowledged), unless the log itself proves that record was durable — then its data was
   * damaged since: the record is kept (that one object reads as ERR_VDE_CORRUPT) and counted as a checksum error. A
   * damaged record of a durable part of the log is still ERR_VDE_CORRUPT for the whole open.
   * Pass 1 also claims every block the surviving records own before the index changes, because index page splits in
   * pass 2 allocate blocks and must not take one that a later record owns. Returns the last LSN to apply.
   */
  async #verifyLog(fromLsn: number): Promise<number> {
    const knownDurable = this.#wal.tailInfo.knownDurableLsn;
    let last = fromLsn;
    for await (const rec of this.#wal.replay(fromLsn)) {
      const owned: Extent[] = [];
      let intact = true;
      for (const op of decodeLogRecord(rec.type, rec.payload, rec.lsn)) {
        const what = `log record ${rec.lsn}`;
        // A record that passed its log checksum holds a key the engine accepted; anything else was not written by
        // VDE and must not reach the index (an empty or over-long key could never be read or deleted again).
        if (op.key.byteLength === 0 || op.key.byteLength > this.#maxKeyBytes) {
          throw new CorruptionError(what, `holds a key of ${op.key.byteLength} bytes`);
        }
        decodeKey(op.key);
        if (op.type !== 'put') continue;
        try {
          const record = await this.#io.loadRecord(op.record, what);
          const blocks = await this.#ownedBlocks(op.record, what);
          try {
            for await (const _ of this.#io.chunks(record, what)) {
              // reading verifies the object checksum at the end
            }
          } catch (err) {
            // The record is sound and the log proves it durable, so the data was durable too (one fsync covers
            // both): damaged since. That object reads as ERR_VDE_CORRUPT (scrub reports it); the rest opens.
            if (!(err instanceof CorruptionError) || rec.lsn > knownDurable) throw err;
            this.#checksumErrors++;
          }
          for (const b of blocks) owned.push(b);
        } catch (err) {
          if (!(err instanceof CorruptionError)) throw err;
          if (rec.lsn <= knownDurable) throw err;
          intact = false;
          break;
        }
      }
      if (!intact) break;
      if (!this.#opts.readOnly) this.#claim(owned, rec.lsn);
      last = rec.lsn;
    }
    return last;
  }

  /**
   * The meta blob's bytes (`metaLength` of them) and its runs (FORMAT.md, "Meta blob"). Version 1: only the blocks
   * that hold metaLength bytes are read (metaBlocks may be larger: the run was sized before the blob was encoded),
   * and a damaged count must not make this read gigabytes. Version 2: the first run, then the extents its header
   * lists, in order (each one's entry lies in the runs before it), each checked to lie in the data area before it is
   * read, and all apart from each other; only the blocks that hold metaLength bytes are read. The caller checks the
   * CRC.
   */
  async #readMeta(sb: Superblock): Promise<{ bytes: Uint8Array; runs: Extent[] }> {
    const bs = sb.blockSize;
    const needBlocks = Math.ceil(sb.metaLength / bs);
    if (sb.version === 1) {
      const bytes = (await this.#device.read(sb.metaStart, needBlocks)).subarray(0, sb.metaLength);
      return { bytes, runs: [{ start: sb.metaStart, count: sb.metaBlocks }] };
    }
    const what = 'checkpoint meta blob';
    const firstRead = Math.min(sb.metaBlocks, needBlocks);
    const first = await this.#device.read(sb.metaStart, firstRead);
    const e = metaExtentCount(first);
    if (e === undefined) throw new CorruptionError(what, 'a version 1 blob under a version 2 superblock');
    if (metaExtentEntry(e) > sb.metaLength) throw new CorruptionError(what, `claims ${e} extents, more than its length holds`);
    const dataStart = sb.walStart + sb.walBlocks;
    const bytes = new Uint8Array(needBlocks * bs);
    const view = viewOf(bytes);
    bytes.set(first, 0);
    let at = firstRead;
    let total = sb.metaBlocks;
    const runs: Extent[] = [{ start: sb.metaStart, count: sb.metaBlocks }];
    // Run after run: each continuation extent's entry lies in the runs read before it (see metaExtentEntry).
    for (let i = 0; i <= e; i++) {
      const r = runs[i]!;
      if (!(r.count >= 1 && r.start >= dataStart && r.start + r.count <= sb.blockCount)) {
        throw new CorruptionError(what, `extent ${r.start}+${r.count} out of range`);
      }
      if (i > 0) {
        total += r.count;
        // Runs that do not overlap hold at most the data area: a hostile count cannot make this loop (or `runs`) grow
        // past what the file holds.
        if (total > sb.blockCount - dataStart) throw new CorruptionError(what, 'its extents hold more blocks than the container');
        if (at < needBlocks) {
          const n = Math.min(r.count, needBlocks - at);
          bytes.set(await this.#device.read(r.start, n), at * bs);
          at += n;
        }
      }
      if (i === e) break;
      const entry = metaExtentEntry(i);
      if (entry + 12 > at * bs) throw new CorruptionError(what, `extent ${i + 1} is listed past the blocks before it`);
      runs.push({ start: getU64(view, entry, what), count: view.getUint32(entry + 8, true) });
    }
    const sorted = [...runs].sort((x, y) => x.start - y.start);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.start < sorted[i - 1]!.start + sorted[i - 1]!.count) throw new CorruptionError(what, 'its extents overlap');
    }
    if (total < needBlocks || at < needBlocks) throw new CorruptionError(what, `its extents hold ${total} blocks, its length needs ${needBlocks}`);
    return { bytes: bytes.subarray(0, sb.metaLength), runs };
  }

  /**
   * The blocks a checkpoint itself lives in must be allocated in its bitmap: the superblocks, the log, the meta blob
   * (every run of it) and the index root. A bitmap that marks any of them free would let the next checkpoint write
   * over them.
   */
  #checkHeldBlocks(sb: Superblock): void {
    const held: [number, number, string][] = [
      [0, sb.walStart + sb.walBlocks, 'the superblocks and the log'],
      ...this.#metaRuns.map((r, i): [number, number, string] =>
        sb.version === 1 ? [r.start, Math.ceil(sb.metaLength / sb.blockSize), 'the checkpoint meta blob'] : [r.start, r.count, `run ${i} of the checkpoint meta blob`],
      ),
      [sb.indexRoot, 1, 'the index root'],
    ];
    for (const [start, count, what] of held) {
      for (let b = start; b < start + count; b++) {
        if (!this.#allocator.isAllocated(b)) throw new CorruptionError('allocator bitmap', `block ${b} of ${what} is marked free`);
      }
    }
  }

  /**
   * Deferred entries name blocks of the data area that the bitmap marks used (they are held, not free), each once:
   * anything else would make a later free fail (or free the log) long after open.
   */
  #checkDeferred(sb: Superblock, deferred: readonly DeferredEntry[]): void {
    const first = sb.walStart + sb.walBlocks;
    const sorted = [...deferred].sort((a, b) => a.start - b.start);
    let end = first;
    for (const d of sorted) {
      if (d.start < end) throw new CorruptionError('checkpoint meta blob', `deferred blocks ${d.start}+${d.count} overlap the log or another entry`);
      for (let b = d.start; b < d.start + d.count; b++) {
        if (!this.#allocator.isAllocated(b)) throw new CorruptionError('checkpoint meta blob', `deferred block ${b} is marked free`);
      }
      end = d.start + d.count;
    }
  }

  #claim(owned: readonly Extent[], lsn: number): void {
    for (const e of owned) {
      // Blocks the checkpoint still deferred (held for readers) that a durable record after it owns were reused by
      // the writer, which takes a deferred block only once no reader may read it: the record's claim stands.
      let held = false;
      for (let b = e.start; b < e.start + e.count && !held; b++) held = this.#allocator.isAllocated(b);
      if (held) {
        const withdrawn = this.#reclaimer.withdraw(e);
        if (withdrawn.length > 0) this.#allocator.free(withdrawn);
      }
    }
    for (const e of owned) {
      for (let b = e.start; b < e.start + e.count; b++) {
        if (this.#allocator.isAllocated(b)) throw new CorruptionError(`log record ${lsn}`, `block ${b} is already in use`);
      }
    }
    this.#allocator.markAllocated(owned);
  }

  async #replayOp(op: LogOp): Promise<void> {
    const previous = op.type === 'put' ? await this.#index.put(op.key, op.record) : await this.#index.delete(op.key);
    if (previous) this.#reclaimer.defer(await this.#ownedBlocks(previous, `previous version of ${decodeKey(op.key)}`), this.#sb.generation);
    if (op.type === 'put' && !previous) this.#objectCount++;
    if (op.type === 'del' && previous) this.#objectCount--;
  }

  /** The blocks an index value owns: its extents and, for an indirect record, the record's own run. */
  /** Direct records (nearly all) answer synchronously; an indirect one reads its run first. */
  #ownedBlocks(value: Uint8Array, what: string): Extent[] | Promise<Extent[]> {
    if (recordKind(value, what) !== KIND_INDIRECT) {
      const rec = this.#io.recordOf(value, what) as ObjectRecord;
      return rec.extents ? [...rec.extents] : [];
    }
    return this.#io.loadRecord(value, what).then((rec) => {
      const p = decodeIndirect(value, what, this.#area);
      return [...(rec.extents ?? []), { start: p.start, count: p.blocks }];
    });
  }

  // ─── public write API ─────────────────────────────────────────────────────────────────────────────────────

  /** Stores `data` under `key` (insert or replace). Resolves once durable (durability 'sync'). */
  async store(key: string, data: ObjectData, options: StoreOptions = {}): Promise<ObjectInfo> {
    this.#checkWritable();
    this.#openWrites++;
    try {
      const keyBytes = encodeKey(key, this.#maxKeyBytes);
      const { metadata, signal } = checkStoreOptions(options);
      const meta = encodeMetadata(metadata);
      const source = normalizeData(data);
      throwIfAborted(signal);
      // Decided in the call's synchronous part, so that later calls on the key see it (see #aheadOfStripe).
      const prior = this.#priorWrite(key);
      const inlineLimit = Math.max(0, this.#inlineLimit(keyBytes, meta));
      // A store that waits for an earlier one takes a turn too: a write called after it may not overtake it then.
      let turn = prior === undefined && source instanceof Uint8Array && source.byteLength <= inlineLimit ? undefined : this.#takeTurn(key, prior);
      try {
        const logBytes = this.#wal.recordBytes(this.#putPayloadBound(keyBytes, meta, source));
        // A stream, or bytes too large to be inline, is written before anything is taken (log space, gate, stripe): a
        // source that produces slowly must not hold the checkpoint gate (every store would queue behind the next
        // checkpoint) or its key's stripe, and stores of keys that share a stripe, or of one key, overlap their data
        // I/O. Its blocks are fresh and private until the store takes the gate (#privateExtents: checkpoints record
        // them as free), and no record names them until its own; the stripe is held only for the record.
        let ahead = source instanceof Uint8Array && source.byteLength <= inlineLimit ? undefined : await this.#writeAhead(source, keyBytes, meta, signal);
        let info: ObjectInfo;
        try {
          if (prior) await this.#afterPrior(prior, signal);
          // The same steps as #withLogSpace + #withWriteLocks, inlined: this is the hottest path, and each async frame
          // and closure the helpers add is a measurable share of a small store.
          const reserving = this.#reserveLog(logBytes, signal);
          if (reserving) {
            // A small store waits for log space here, before its stripe: a later write to the key must wait for it
            // (a large one whose data is written meanwhile could find the space first). Still in the synchronous part.
            turn ??= this.#takeTurn(key);
            await reserving;
          }
          this.#writers++;
          try {
            const opts = signal ? { signal } : undefined;
            let gate: { release(): void };
            try {
              gate = await this.#gate.shared(opts);
            } catch (err) {
              mapLockError(err);
            }
            try {
              // Checked again under the gate: a checkpoint that failed while this store waited for the gate has freed
              // blocks that the durable checkpoint still references (see #allocateData), and poisoned the engine.
              this.#checkAdmitted();
              let early: WrittenObject | undefined;
              if (ahead) {
                // Handed over under the gate: no checkpoint runs before this store has logged and applied them (or
                // freed them below).
                early = ahead.written;
                this.#privateExtents.delete(ahead.track);
                ahead = undefined;
              }
              let handedOver = false;
              let region: { release(): void };
              try {
                const granting = this.#stripes.acquire(key, opts);
                turn?.(); // queued for the stripe (or refused): later writes to the key may queue behind it
                region = await granting;
              } catch (err) {
                if (early?.extents && !this.#poisoned) this.#allocator.free(early.extents);
                mapLockError(err);
              }
              try {
                this.#checkAdmitted();
                handedOver = true; // from here #preparePut frees them if it fails, and the prepared version owns them
                const prepared = this.#preparePut(key, keyBytes, source, meta, signal, early);
                const put = prepared instanceof Promise ? await prepared : prepared;
                try {
                  throwIfAborted(signal);
                  await this.#append(LOG_PUT, put.payload ?? encodePut(keyBytes, put.value));
                } catch (err) {
                  if (!this.#poisoned) this.#allocator.free(put.owned);
                  throw err;
                }
                const applying = this.#apply([put]);
                if (applying) await applying;
                info = infoOf(key, put.record);
              } catch (err) {
                // Blocks written ahead that no prepared version took over are nobody's: free them.
                if (!handedOver && early?.extents && !this.#poisoned) this.#allocator.free(early.extents);
                throw err;
              } finally {
                region.release();
              }
            } finally {
              gate.release();
            }
          } finally {
            this.#walReserved -= logBytes;
            this.#writers--;
          }
        } finally {
          // Written ahead but never handed over (aborted, closed, no log space): nobody's.
          if (ahead) this.#dropAhead(ahead);
        }
        this.#afterWrite();
        return info;
      } finally {
        turn?.();
      }
    } finally {
      this.#endWrite();
    }
  }

  /** The write to `key` that later writes must let ask for its stripe first, if any (see #aheadOfStripe). */
  #priorWrite(key: string): Promise<void> | undefined {
    if (this.#waitingBatches.size === 0) return this.#aheadOfStripe.size === 0 ? undefined : this.#aheadOfStripe.get(key);
    const found: Promise<void>[] = [];
    const single = this.#aheadOfStripe.get(key);
    if (single) found.push(single);
    for (const b of this.#waitingBatches) {
      b.keys ??= new Set(b.ops.map((o) => o.key));
      if (b.keys.has(key)) found.push(b.held);
    }
    return found.length === 0 ? undefined : found.length === 1 ? found[0] : Promise.all(found).then(() => undefined);
  }

  /**
   * Makes the calling write the one later writes to `key` wait for; the function returned lets them go (idempotent).
   * They go only once `prior` (the write this one waits for) has gone too: a waiting write that fails or is aborted
   * does not let later ones overtake the write it waited for.
   */
  #takeTurn(key: string, prior?: Promise<void>): () => void {
    let go!: () => void;
    const mine = new Promise<void>((resolve) => (go = resolve));
    this.#aheadOfStripe.set(key, mine);
    const finish = (): void => {
      if (this.#aheadOfStripe.get(key) === mine) this.#aheadOfStripe.delete(key);
      go();
    };
    let gone = false;
    return () => {
      if (gone) return;
      gone = true;
      if (prior) void prior.then(finish);
      else finish();
    };
  }

  /** Waits for an earlier write to the same key (see #aheadOfStripe), or for `signal`. */
  async #afterPrior(prior: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (!signal) return prior;
    throwIfAborted(signal);
    let detach: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        detach = onAbort(signal, () => reject(new AbortedError(undefined, { cause: signal.reason })));
        void prior.then(resolve);
      });
    } finally {
      detach?.();
    }
  }

  /** Deletes `key`. Resolves true if it existed, false if not (deleting twice is fine). */
  async delete(key: string): Promise<boolean> {
    this.#checkWritable();
    this.#openWrites++;
    try {
      const keyBytes = encodeKey(key, this.#maxKeyBytes);
      // Taken before any await (see #aheadOfStripe). A delete always takes a turn: it may wait (a turn of the event
      // loop, log space, the gate) before it asks for its stripe, and a write called after it must not go first.
      const prior = this.#priorWrite(key);
      const myTurn = this.#takeTurn(key, prior);
      let existed: boolean;
      try {
        // A delete of a missing key whose path is cached completes without I/O: a loop of them must let the event loop
        // turn (see #lookup).
        const turn = turnIfSpent();
        if (turn) await turn;
        if (prior) await prior;
        const making = this.#makeMetaRoom(1);
        if (making) await making;
        const logBytes = this.#wal.recordBytes(2 + keyBytes.byteLength);
        existed = await this.#withLogSpace(logBytes, undefined, () =>
          this.#withWriteLocks([key], undefined, async () => {
            myTurn(); // holds the stripe: a later write to the key queues behind it
            // Only what the next checkpoint needs, not a store's reserve: deletes must work in a full container.
            // Looked up first (the stripe keeps the answer true): a delete of a missing key changes nothing, and at the
            // limit it was refused ERR_VDE_FULL instead of resolving false.
            await this.#index.prefetch(keyBytes);
            if (!(await this.#index.get(keyBytes))) return false;
            const admitted = await this.#ensureDeleteRoom(1);
            try {
              await this.#append(LOG_DEL, encodeDel(keyBytes));
              await this.#apply([{ key, keyBytes }]);
              return true;
            } finally {
              admitted();
            }
          }),
        );
      } finally {
        myTurn();
      }
      this.#afterWrite();
      return existed;
    } finally {
      this.#endWrite();
    }
  }

  /** Applies every operation or none: one log record, all keys' stripes held together. */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    this.#checkWritable();
    this.#openWrites++;
    try {
      if (!Array.isArray(operations)) throw new InvalidArgumentError('batch() takes an array of operations');
      const ops = operations.map((op: unknown, i) => {
        if (op === null || typeof op !== 'object') throw new InvalidArgumentError(`batch operation ${i} is not an object`);
        const o = op as Record<string, unknown>;
        const key = o.key as string;
        try {
          const keyBytes = encodeKey(key, this.#maxKeyBytes);
          if (o.type === 'put' || o.type === 'del') rejectUnknown(o, o.type === 'put' ? PUT_FIELDS : DEL_FIELDS, 'field');
          if (o.type === 'put') {
            const data = o.data;
            if (!(typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data))) {
              throw new InvalidArgumentError(`batch operation ${i}: data must be a Uint8Array, string or ArrayBuffer (stream with store())`);
            }
            return { type: 'put' as const, key, keyBytes, source: normalizeData(data) as Uint8Array, meta: encodeMetadata(o.metadata) };
          }
          if (o.type === 'del') return { type: 'del' as const, key, keyBytes };
        } catch (err) {
          // Which of thousands of operations is wrong: the key and metadata checks do not know.
          if (err instanceof VdeError && !err.message.startsWith('batch operation')) err.message = `batch operation ${i}: ${err.message}`;
          throw err;
        }
        throw new InvalidArgumentError(`batch operation ${i}: type must be 'put' or 'del'`);
      });
      if (ops.length === 0) {
        const turn = turnIfSpent(); // nothing to do, but a loop of these must let the event loop turn too
        if (turn) await turn;
        return;
      }
      // Taken before any await (see #aheadOfStripe). A batch always takes a turn on its keys (it may wait for log
      // space and the gate before it asks for its stripes, as a delete does): a write to one of them called after it
      // waits until it holds them (#waitingBatches).
      const priors =
        this.#aheadOfStripe.size === 0 && this.#waitingBatches.size === 0
          ? []
          : ops.map((o) => this.#priorWrite(o.key)).filter((p) => p !== undefined);
      const allPriors = priors.length === 0 ? undefined : Promise.all(priors).then(() => undefined);
      let letGo!: () => void;
      const held = new Promise<void>((resolve) => {
        let gone = false;
        letGo = () => {
          if (gone) return;
          gone = true;
          const finish = (): void => {
            this.#waitingBatches.delete(entry);
            resolve();
          };
          if (allPriors) void allPriors.then(finish);
          else finish();
        };
      });
      const entry = { ops, held };
      this.#waitingBatches.add(entry);
      try {
        if (allPriors) await allPriors;
        // The puts' payload bounds are also the index entry bytes the batch inserts (see #batchBlocks).
        let putBytes = 0;
        let delBytes = 0;
        let dels = 0;
        for (const op of ops) {
          if (op.type === 'put') putBytes += this.#putPayloadBound(op.keyBytes, op.meta, op.source) + 8;
          else {
            delBytes += 3 + op.keyBytes.byteLength;
            dels++;
          }
        }
        // Its deletes add entries to the next meta blob, as delete()'s do.
        const making = dels > 0 ? this.#makeMetaRoom(dels) : undefined;
        if (making) await making;
        const logBytes = this.#wal.recordBytes(8 + putBytes + delBytes);
        await this.#withLogSpace(logBytes, undefined, () =>
          this.#withWriteLocks(
            ops.map((o) => o.key),
            undefined,
            async () => {
              letGo(); // holds the stripes: later writes to its keys queue behind it
              // A large batch's index changes can need thousands of pages when it is applied, after its record is
              // durable: they are made free first (or the batch fails here with ERR_VDE_FULL, having changed nothing).
              // A batch of deletes only is checked as deletes are (a full container can always be emptied).
              const puts = putBytes > 0;
              const headroom = puts && ops.length > 1 ? this.#batchBlocks(putBytes, ops.length) : 0;
              this.#batchHeadroom += headroom;
              try {
                if (puts && this.#allocator.freeCount < this.#reserveBlocks()) await this.#ensureHeadroom();
                const admitted = dels > 0 ? await this.#ensureDeleteRoom(dels) : undefined;
                try {
                  await this.#runBatch(ops);
                } finally {
                  admitted?.();
                }
              } finally {
                this.#batchHeadroom -= headroom;
              }
            },
          ),
        );
      } finally {
        letGo();
      }
      this.#afterWrite();
    } finally {
      this.#endWrite();
    }
  }

  /** The batch proper, under its stripes and with its headroom made free (see batch()). */
  async #runBatch(
    ops: readonly ({ type: 'put'; key: string; keyBytes: Uint8Array; source: Uint8Array; meta: Uint8Array } | { type: 'del'; key: string; keyBytes: Uint8Array })[],
  ): Promise<void> {
    const direct = this.#encodeInlineBatch(ops);
    if (direct) {
      // Nothing allocated: a failed append leaves nothing to free (and poisons the engine, see #append).
      await this.#append(LOG_BATCH, direct.payload);
      await this.#apply(direct.changes);
      return;
    }
    const puts = new Map<number, PreparedPut>();
    // A put after a del of its key in this batch makes a new object (as delete() then store() would): its creation
    // time is the batch's, not that of the version the del removed.
    let deleted: Set<string> | undefined;
    try {
      const prepared = ops.map((op) => {
        if (op.type !== 'put') {
          (deleted ??= new Set()).add(op.key);
          return undefined;
        }
        try {
          return this.#preparePut(op.key, op.keyBytes, op.source, op.meta, undefined, undefined, deleted?.has(op.key) === true);
        } catch (err) {
          return rejected(err);
        }
      });
      const allSync = !prepared.some((p) => p instanceof Promise);
      if (allSync) {
        prepared.forEach((p, i) => {
          if (p) puts.set(i, p as PreparedPut);
        });
      } else {
        // Settle every preparation before failing, so each one's blocks are known and freed.
        const settled = await Promise.allSettled(prepared.map((p) => Promise.resolve(p)));
        settled.forEach((s, i) => {
          if (s.status === 'fulfilled' && s.value) puts.set(i, s.value);
        });
        for (const s of settled) if (s.status === 'rejected') throw s.reason;
      }
      // Load every path the apply will need. A synchronous preparation found its path cached, and nothing
      // has run since that could evict it, so only deletes (and any batch that awaited) need this pass.
      for (const op of ops) {
        if ((allSync && op.type === 'put') || this.#index.getCachedView(op.keyBytes, true) !== undefined) continue;
        await this.#index.prefetch(op.keyBytes);
      }
      const logOps: LogOp[] = ops.map((op, i) =>
        op.type === 'put' ? { type: 'put', key: op.keyBytes, record: puts.get(i)!.value } : { type: 'del', key: op.keyBytes },
      );
      await this.#append(LOG_BATCH, encodeBatch(logOps));
    } catch (err) {
      if (!this.#poisoned) for (const p of puts.values()) this.#allocator.free(p.owned);
      throw err;
    }
    await this.#apply(ops.map((op, i) => puts.get(i) ?? { key: op.key, keyBytes: op.keyBytes }));
  }

  /**
   * The batch's LOG_BATCH payload encoded in one pass, each put's record written straight into it (the index values
   * are views of it), when every operation is a put of small in-memory bytes whose key path is cached and holds no
   * indirect record: a bulk load of small objects. Undefined otherwise (the general path prepares each put on its
   * own, then copies the records into the batch record). Same bytes and index values as the general path; one
   * synchronous run, so the cached views it reads stay valid. W3 (200,000 puts of 100 B in batches of 1,000) spent
   * 15% of its time encoding each put's own payload and 6% copying it again into the batch record.
   */
  #encodeInlineBatch(
    ops: readonly ({ type: 'put'; key: string; keyBytes: Uint8Array; source: Uint8Array; meta: Uint8Array } | { type: 'del' })[],
  ): { payload: Uint8Array; changes: IndexChange[] } | undefined {
    if (this.#allocator.freeCount < this.#reserveBlocks()) return undefined;
    let size = 4;
    const previous: (Uint8Array | null)[] = new Array<Uint8Array | null>(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.type !== 'put' || op.source.byteLength > this.#inlineLimit(op.keyBytes, op.meta)) return undefined;
      const view = this.#index.getCachedView(op.keyBytes, true);
      if (view === undefined || (view !== null && view[0] === KIND_INDIRECT)) return undefined;
      previous[i] = view; // a view of a cached leaf: valid until the index changes, after this synchronous run
      size += 7 + op.keyBytes.byteLength + recordBytesFor(op.meta.byteLength, op.source.byteLength, 0);
    }
    const payload = newBytes(size);
    const changes: IndexChange[] = new Array<IndexChange>(ops.length);
    const now = Date.now();
    let o = 0;
    wr32(payload, o, ops.length);
    o += 4;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as { key: string; keyBytes: Uint8Array; source: Uint8Array; meta: Uint8Array };
      const kl = op.keyBytes.byteLength;
      const recordBytes = recordBytesFor(op.meta.byteLength, op.source.byteLength, 0);
      const prev = previous[i];
      const createdMs = prev ? (this.#io.recordOf(prev, `object ${op.key}`) as ObjectRecord).createdMs : now;
      payload[o] = 1; // put
      payload[o + 1] = kl & 0xff;
      payload[o + 2] = kl >>> 8;
      payload.set(op.keyBytes, o + 3);
      o += 3 + kl;
      wr32(payload, o, recordBytes);
      o += 4;
      writeRecord(payload, o, {
        size: op.source.byteLength,
        createdMs,
        modifiedMs: now,
        crc: objectCrc(op.source),
        nonce: (Math.random() * 0x1_0000_0000) >>> 0,
        metadata: op.meta,
        inline: op.source,
      });
      changes[i] = { key: op.key, keyBytes: op.keyBytes, value: payload.subarray(o, o + recordBytes) };
      o += recordBytes;
    }
    return { payload, changes };
  }

  // ─── public read API ──────────────────────────────────────────────────────────────────────────────────────

  /** The object's bytes; `ERR_VDE_NOT_FOUND` if the key does not exist. */
  retrieve(key: string, options?: ReadOptions): Promise<Uint8Array> {
    // Options are checked only when given (a call here cost R1 4-8%), and on every path: an unknown name (`sigal`)
    // was accepted for objects answered from memory and refused for the others.
    if (options === undefined) options = NO_READ_OPTIONS;
    else {
      try {
        checkReadOptions(options, 'retrieve');
      } catch (err) {
        return rejected(err);
      }
    }
    // Fast path: an inline object whose index path is cached is read in one synchronous run (no await, no reader
    // registration: no block is read, and the bytes are copied before anything else can run).
    if (options.signal === undefined) {
      try {
        const view = this.#cachedView(this.#index, key);
        if (view === null) return rejectedSoon(notFound(key));
        if (view !== undefined) {
          const data = verifiedInlineData(view);
          if (data !== undefined) return settledSoon(copyOut(data));
          // Not a plain inline record, or a bad one: the full decode and verifying read give the exact answer.
          if (view[0] !== KIND_INDIRECT) {
            const found = this.#io.recordOf(view, `object ${key}`) as ObjectRecord;
            if (found.inline) return settledSoon(this.#io.readInline(found as ObjectRecord & { inline: Uint8Array }, `object ${key}`));
          }
        }
      } catch (err) {
        return rejected(err);
      }
    }
    return this.#read(this.#index, key, options);
  }

  /** A stream of the object's bytes, read in 1 MiB chunks (for objects larger than memory). */
  createReadStream(key: string, options: ReadOptions = {}): Readable {
    return this.#readStream(this.#index, key, options);
  }

  exists(key: string): Promise<boolean> {
    try {
      const found = this.#cachedRecord(this.#index, key);
      if (found !== undefined) return settledSoon(found !== null);
    } catch (err) {
      return rejected(err);
    }
    return this.#exists(this.#index, key);
  }

  stat(key: string): Promise<ObjectInfo> {
    try {
      const found = this.#cachedRecord(this.#index, key);
      if (found === null) return rejectedSoon(notFound(key));
      if (found !== undefined) return settledSoon(infoOf(key, found));
    } catch (err) {
      return rejected(err);
    }
    return this.#stat(this.#index, key);
  }

  /** Objects in the byte order of their UTF-8 keys. */
  list(options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    return this.#list(this.#index, options);
  }

  /**
   * Makes every store, delete and batch that resolved before the call durable, as durability 'sync' would have: one
   * log fsync, shared with the group commit (no checkpoint). With durability 'sync' everything resolved is durable
   * already and this costs at most an fsync. A failed fsync poisons the engine, as a failed commit does.
   */
  async sync(): Promise<void> {
    this.#checkWritable();
    this.#openWrites++;
    try {
      await this.#wal.sync();
    } catch (err) {
      this.#poison(err);
      throw err;
    } finally {
      this.#endWrite();
    }
  }

  // ─── checkpoints and snapshots ────────────────────────────────────────────────────────────────────────────

  /** Writes the index and allocator state and truncates the log. */
  async checkpoint(): Promise<void> {
    this.#checkWritable();
    await this.#runCheckpoint({});
  }

  /**
   * A point-in-time view (taken by a checkpoint); release it with `await using` or `close()`. A read-only open
   * already reads one point in time and never frees a block, so its snapshot reads its own index.
   */
  async snapshot(): Promise<Snapshot> {
    if (this.#opts.readOnly) {
      this.#checkOpen();
      return new Snapshot(this.#readsOf(this.#index, () => undefined), { name: undefined, generation: this.#sb.generation, created: new Date() });
    }
    this.#checkWritable();
    const { generation, root } = await this.#runCheckpoint({ holdSnapshot: true });
    return this.#snapshotAt(generation, root, undefined, new Date());
  }

  /** A named snapshot: survives reopen, holds its blocks until `deleteSnapshot(name)`. */
  async createSnapshot(name: string): Promise<SnapshotInfo> {
    this.#checkWritable();
    checkSnapshotName(name);
    // A name being created counts as taken: two concurrent creations of one name would otherwise both succeed,
    // the second replacing the first and leaving the first one's hold on its blocks behind for good.
    if (this.#named.has(name) || this.#creatingSnapshots.has(name)) {
      throw new ExistsError(`a snapshot named ${JSON.stringify(name)} exists`);
    }
    this.#creatingSnapshots.add(name);
    try {
      await this.#runCheckpoint({ addSnapshot: name });
    } finally {
      this.#creatingSnapshots.delete(name);
    }
    const s = this.#named.get(name);
    if (!s) throw new ExistsError(`a snapshot named ${JSON.stringify(name)} exists`);
    return snapshotInfo(s);
  }

  listSnapshots(): SnapshotInfo[] {
    this.#checkOpen();
    return [...this.#named.values()].sort((x, y) => x.generation - y.generation).map(snapshotInfo);
  }

  async openSnapshot(name: string): Promise<Snapshot> {
    this.#checkOpen();
    const s = this.#named.get(name);
    if (!s) {
      checkSnapshotName(name); // a name createSnapshot refuses is a bad argument, not a missing snapshot
      throw new NotFoundError(`no snapshot named ${JSON.stringify(name)}`);
    }
    this.#reclaimer.holdSnapshot(s.generation);
    return this.#snapshotAt(s.generation, s.root, s.name, new Date(s.createdMs));
  }

  async deleteSnapshot(name: string): Promise<boolean> {
    this.#checkWritable();
    const s = this.#named.get(name);
    if (!s) {
      checkSnapshotName(name); // as openSnapshot
      return false;
    }
    this.#named.delete(name);
    this.#reclaimer.releaseSnapshot(s.generation);
    const checkpoints = this.#checkpoints;
    try {
      await this.#runCheckpoint({ snapshotDeleted: true });
    } catch (err) {
      // A checkpoint that failed before it changed anything (ERR_VDE_FULL: no room for its pages or meta blob; the
      // engine is not poisoned) leaves the snapshot as it was, when no other checkpoint recorded the deletion
      // meanwhile: the call failed, and the snapshot still holds its blocks and is listed. It was gone from
      // listSnapshots() while the call rejected, and a crash before the next checkpoint brought it back.
      if (!this.#poisoned && err instanceof FullError && this.#checkpoints === checkpoints && !this.#named.has(name)) {
        this.#named.set(name, s);
        this.#reclaimer.holdSnapshot(s.generation);
      }
      throw err;
    }
    return true;
  }

  async #snapshotAt(generation: number, root: number, name: string | undefined, created: Date): Promise<Snapshot> {
    let tree: BTree;
    try {
      tree = await BTree.open(this.#pageStore, root, { readOnly: true, cacheSizeBytes: 1 << 20 });
    } catch (err) {
      this.#reclaimer.releaseSnapshot(generation);
      throw err;
    }
    const scope = { generation, open: true };
    this.#snapshotScopes.set(tree, scope);
    const host = this.#readsOf(tree, () => {
      // Reads already running keep their own hold on the generation (#beginRead); new ones are refused.
      scope.open = false;
      this.#reclaimer.releaseSnapshot(generation);
    });
    return new Snapshot(host, { name, generation, created });
  }

  /** A snapshot's reads: the engine's reads against `tree`. */
  #readsOf(tree: BTree, release: () => void): SnapshotHost {
    return {
      retrieve: (key, o) => this.#read(tree, key, o),
      createReadStream: (key, o) => this.#readStream(tree, key, o),
      exists: (key) => this.#exists(tree, key),
      stat: (key) => this.#stat(tree, key),
      list: (o) => this.#list(tree, o),
      release,
    };
  }

  // ─── health, scrub, check, stats ──────────────────────────────────────────────────────────────────────────

  async health(): Promise<HealthReport> {
    this.#checkOpen();
    const bs = this.#device.blockSize;
    const containerBytes = this.#device.blockCount * bs;
    const usedBytes = (this.#allocator.blockCount - this.#allocator.freeCount) * bs;
    const unlimited = this.#opts.maxSizeBytes === Number.MAX_SAFE_INTEGER;
    // The container never grows past whole blocks: a limit that is not a multiple of the block size holds fewer bytes.
    let capacityBytes = unlimited ? containerBytes : Math.max(containerBytes, Math.floor(this.#opts.maxSizeBytes / bs) * bs);
    if (this.#path !== undefined) {
      try {
        const [st, file] = await Promise.all([fs.statfs(this.#path), fs.stat(this.#path)]);
        // The file grows sparse: blocks it never wrote are holes that need disk space too, so what it can hold is
        // what the disk holds of it (st_blocks) plus the free disk space. (Counting the whole file size reported a
        // full file system's holes as free space where every write into them failed ENOSPC.)
        const disk = file.blocks > 0 ? Math.min(containerBytes, Math.max(file.blocks * 512, usedBytes)) : containerBytes;
        capacityBytes = Math.min(unlimited ? Infinity : capacityBytes, disk + st.bavail * st.bsize);
      } catch {
        // statfs is not available everywhere: fall back to the limit or the container itself.
      }
    }
    // The checkpoint reserve is not free for objects: counting it as used makes a container that refuses stores
    // for lack of space show as critical, and freeBytes what a store can still get.
    // A store in flight counts its own index change too (#writerHeadroom), so with none in flight one is added.
    const reserve = this.#reserveBlocks() + (this.#writers === 0 ? this.#writerHeadroom() : 0);
    const reservedBytes = Math.min(reserve * bs, Math.max(0, capacityBytes - usedBytes));
    const usedPercent = capacityBytes > 0 ? Math.min(100, ((usedBytes + reservedBytes) / capacityBytes) * 100) : 100;
    const walFillPercent = this.#wal.fillRatio * 100;
    const reasons: string[] = [];
    let status: HealthReport['status'] = 'healthy';
    if (usedPercent > 95 || walFillPercent > 90 || this.#poisoned) {
      status = 'critical';
    } else if (usedPercent > 80 || walFillPercent > 75 || this.#checksumErrors > 0) {
      status = 'degraded';
    }
    if (usedPercent > 80) reasons.push(`${usedPercent.toFixed(1)}% of capacity used`);
    if (walFillPercent > 75) reasons.push(`log ${walFillPercent.toFixed(1)}% full`);
    if (this.#checksumErrors > 0) reasons.push(`${this.#checksumErrors} checksum errors seen`);
    if (this.#poisoned) reasons.push(`writes refused after an I/O failure: ${this.#poisoned.message}`);
    return {
      status,
      reasons,
      usedBytes,
      reservedBytes,
      freeBytes: Math.max(0, capacityBytes - usedBytes - reservedBytes),
      capacityBytes,
      usedPercent,
      containerBytes,
      objectCount: this.#objectCount,
      walFillPercent,
      checksumErrors: this.#checksumErrors,
      snapshots: this.#named.size,
      poisoned: this.#poisoned !== undefined,
    };
  }

  /** Reads and verifies every index page and every object. Damage is reported, not thrown. */
  async scrub(options: ScrubOptions = {}): Promise<ScrubReport> {
    this.#checkOpen();
    checkScrubOptions(options);
    throwIfAborted(options.signal);
    const started = performance.now();
    const report: ScrubReport = { ok: true, objectsChecked: 0, bytesChecked: 0, indexChecked: false, problems: [], durationMs: 0 };
    const reported = new Set<string>();
    const problem = (err: unknown, key?: string): void => {
      const e = err as { code?: unknown; message?: unknown };
      const found = { ...(key === undefined ? {} : { key }), code: typeof e.code === 'string' ? e.code : 'ERR_VDE_IO', message: String(e.message) };
      // The structural check and the walk over the entries meet the same damaged index page: report it once.
      const id = `${found.key ?? ''}\u0000${found.code}\u0000${found.message}`;
      if (reported.has(id)) return;
      reported.add(id);
      report.problems.push(found);
      if (err instanceof CorruptionError) this.#checksumErrors++;
    };
    // A writable engine scrubs a point-in-time tree: a checkpoint held like a snapshot, read from the disk by a
    // read-only tree of its own. The live tree changes under concurrent stores (its structural check gave up with
    // "the tree kept changing" under 16 writers), and pages only in memory have nothing on disk to verify yet.
    let tree = this.#index;
    let objectCount = this.#objectCount;
    let held: number | undefined;
    let cut: CheckpointResult | undefined;
    if (!this.#opts.readOnly && !this.#poisoned) {
      try {
        cut = await this.#runCheckpoint({ holdSnapshot: true });
      } catch (err) {
        // No point-in-time image (an I/O failure, which also stops the writers, or no room): the failure is the
        // first problem, and the live tree is scrubbed instead.
        if (!(err instanceof VdeError) || err instanceof ClosedError) throw err;
        problem(err);
      }
    }
    if (cut) {
      held = cut.generation;
      objectCount = cut.objects;
      try {
        tree = await BTree.open(this.#pageStore, cut.root, { readOnly: true, cacheSizeBytes: 1 << 20 });
      } catch (err) {
        this.#reclaimer.releaseSnapshot(held);
        if (!(err instanceof CorruptionError)) throw err;
        problem(err);
        report.ok = false;
        report.durationMs = performance.now() - started;
        return report;
      }
    }
    try {
      await this.#scrubTree(tree, objectCount, report, problem, options);
    } finally {
      if (held !== undefined) this.#reclaimer.releaseSnapshot(held);
    }
    report.ok = report.problems.length === 0;
    report.durationMs = performance.now() - started;
    return report;
  }

  async #scrubTree(
    tree: BTree,
    objectCount: number,
    report: ScrubReport,
    problem: (err: unknown, key?: string) => void,
    { onProgress, signal }: ScrubOptions,
  ): Promise<void> {
    try {
      // The index check reads every page (seconds for millions of keys): an abort stops it before the next page.
      await tree.check({ signal });
      report.indexChecked = true;
    } catch (err) {
      if (err instanceof AbortedError) throw new AbortedError(undefined, { cause: signal?.reason });
      if (this.#closedUnder(err)) throw new ClosedError('the engine was closed during the scrub');
      problem(err);
    }
    const reader = this.#reclaimer.beginRead();
    // Which blocks the objects walked so far own: two objects sharing a block, or an object on a block the bitmap
    // marks free, read fine today but are overwritten by the next store. (A read-only open has not claimed the
    // blocks of the log's records in its bitmap, so only sharing is checked there.)
    const owners = new Uint8Array(Math.ceil(this.#allocator.blockCount / 8));
    const checkOwned = async (value: Uint8Array, key: string): Promise<void> => {
      for (const e of await this.#ownedBlocks(value, `object ${key}`)) {
        for (let b = e.start; b < e.start + e.count && b < this.#allocator.blockCount; b++) {
          const bit = 1 << (b & 7);
          if ((owners[b >> 3]! & bit) !== 0) throw new CorruptionError(`object ${key}`, `block ${b} also belongs to another object`);
          owners[b >> 3]! |= bit;
          if (!this.#opts.readOnly && !this.#allocator.isAllocated(b)) {
            throw new CorruptionError(`object ${key}`, `block ${b} is marked free in the allocator bitmap`);
          }
        }
      }
    };
    try {
      for await (const [k, v] of tree.entries()) {
        throwIfAborted(signal);
        const key = decodeKey(k);
        try {
          const rec = await this.#io.loadRecord(v, `object ${key}`);
          await checkOwned(v, key);
          // Verified whatever verifyChecksums says: that option skips the check on reads, and scrub is the check.
          for await (const chunk of this.#io.chunks(rec, `object ${key}`, true)) {
            throwIfAborted(signal); // per chunk: a large object does not delay the abort
            report.bytesChecked += chunk.byteLength;
          }
        } catch (err) {
          if (err instanceof VdeError && err.code !== 'ERR_VDE_CORRUPT' && err.code !== 'ERR_VDE_IO') throw err;
          problem(err, key);
        }
        report.objectsChecked++;
        if (onProgress) {
          try {
            onProgress({ objectsChecked: report.objectsChecked, objectCount, bytesChecked: report.bytesChecked });
          } catch (err) {
            throw new CallbackFailure(err);
          }
        }
      }
    } catch (err) {
      // What the caller's own callback threw is theirs, not damage in the container: it ends the scrub as it is.
      if (err instanceof CallbackFailure) throw err.callbackError;
      if (err instanceof AbortedError) throw err;
      // The engine was closed under the scrub: that is not damage in the container.
      if (this.#closedUnder(err)) throw new ClosedError('the engine was closed during the scrub');
      if (signal?.aborted) throw new AbortedError(undefined, { cause: signal.reason });
      problem(err);
    } finally {
      this.#reclaimer.endRead(reader);
    }
  }

  /**
   * Consistency check (bbolt's tx.Check), run with writers paused (the gate held exclusively): the index structure,
   * the allocator's own bookkeeping, and a census of every block: each is reserved (superblocks, log), part of the
   * checkpoint meta blob, an index page (or one the checkpointed tree still uses), owned by exactly one object (extents, indirect record), or waiting in the
   * deferred-free list — and the allocator marks exactly those blocks as used (no leak, no double use).
   * Throws CorruptionError naming the first violation.
   */
  async check(): Promise<CheckReport> {
    this.#checkOpen();
    // After a failed checkpoint or commit the block bookkeeping in memory is knowingly not a clean cut (a checkpoint
    // frees blocks before its superblock is durable): a census then reported ERR_VDE_CORRUPT ("block 69 belongs to
    // both the checkpoint meta blob and the deferred-free list") for a container that reopens clean.
    this.#throwIfPoisoned();
    const guard = await this.#gate.exclusive().catch(mapLockError);
    try {
      this.#throwIfPoisoned(); // poisoned while check() waited for the gate
      return await this.#checkLocked();
    } finally {
      guard.release();
    }
  }

  #throwIfPoisoned(): void {
    if (this.#poisoned) throw this.#poisoned;
  }

  async #checkLocked(): Promise<CheckReport> {
    const { pageNumbers, retiredPages } = await this.#index.check();
    const census = this.#opts.readOnly ? undefined : new BlockCensus(this.#allocator.blockCount);
    if (census) {
      this.#allocator.check();
      census.add({ start: 0, count: WAL_START + this.#sb.walBlocks }, 'the superblocks and the log');
      for (const r of this.#metaRuns) census.add(r, 'the checkpoint meta blob');
      for (const p of pageNumbers) census.add({ start: p, count: 1 }, `index page ${p}`);
      // Pages of the checkpointed tree that the live one has replaced: the next checkpoint frees them.
      for (const p of retiredPages) census.add({ start: p, count: 1 }, `retired index page ${p}`);
      for (const e of this.#reclaimer.pendingExtents()) census.add(e, 'the deferred-free list');
    }
    let objects = 0;
    for await (const [k, v] of this.#index.entries()) {
      const key = decodeKey(k);
      objects++;
      if (census) for (const e of await this.#ownedBlocks(v, `object ${key}`)) census.add(e, `object ${key}`);
    }
    if (objects !== this.#objectCount) {
      throw new CorruptionError('check', `the index holds ${objects} objects, the count says ${this.#objectCount}`);
    }
    if (census) {
      // Taken last, in the same synchronous step as the comparison: streams written ahead of the gate allocate (and
      // free) while check() runs.
      // (A stream may also have grown the container meanwhile: blocks past the census are not compared.)
      for (const e of this.#privateBlocks()) {
        const count = Math.min(e.count, census.blockCount - e.start);
        if (count > 0) census.add({ start: e.start, count }, 'a stream being written ahead of its store');
      }
      census.compare(this.#allocator);
    }
    return {
      objects,
      blocksReferenced: census?.counted ?? 0,
      indexPages: pageNumbers.length,
      pendingFreeBlocks: this.#reclaimer.pendingBlocks,
    };
  }

  stats(): {
    objects: number;
    generation: number;
    checkpoints: number;
    /** Automatic checkpoints that flushed the index ahead, while stores went on. */
    preflushes: number;
    containerBytes: number;
    freeBlocks: number;
    pendingFreeBlocks: number;
    stripes: ReturnType<StripedWriteLock['stats']>;
    gate: ReturnType<AsyncRwLock['stats']>;
    wal: ReturnType<WriteAheadLog['stats']> & { fillRatio: number };
    index: ReturnType<BTree['stats']>;
  } {
    this.#checkOpen();
    return {
      objects: this.#objectCount,
      generation: this.#sb.generation,
      checkpoints: this.#checkpoints,
      preflushes: this.#preflushes,
      containerBytes: this.#device.blockCount * this.#device.blockSize,
      freeBlocks: this.#allocator.freeCount,
      pendingFreeBlocks: this.#reclaimer.pendingBlocks,
      stripes: this.#stripes.stats(),
      gate: this.#gate.stats(),
      wal: { ...this.#wal.stats(), fillRatio: this.#wal.fillRatio },
      index: this.#index.stats(),
    };
  }

  /** The stripe lock (for tests and tools that want its statistics). */
  get stripes(): StripedWriteLock {
    return this.#stripes;
  }

  get blockSize(): number {
    return this.#device.blockSize;
  }

  get maxKeyBytes(): number {
    return this.#maxKeyBytes;
  }

  // ─── close ────────────────────────────────────────────────────────────────────────────────────────────────

  /** Waits for in-flight writes, checkpoints, and closes the container. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    let failure: Error | undefined;
    try {
      // Writes called before close() complete (new ones are refused: #closing is set).
      if (this.#openWrites > 0) await new Promise<void>((resolve) => (this.#writesDrained = resolve));
      this.#pageStore.hurry();
      await this.#autoCheckpoint?.catch(() => undefined);
      await this.#checkpointTail.catch(() => undefined);
      const guard = await this.#gate.exclusive();
      try {
        this.#closed = true;
        if (!this.#opts.readOnly && !this.#poisoned) await this.#checkpointLocked({});
      } finally {
        guard.release();
      }
      await this.#wal.close();
    } catch (err) {
      failure = err as Error;
    } finally {
      this.#closed = true;
      await this.#stripes[Symbol.asyncDispose]();
      await this.#gate[Symbol.asyncDispose]();
      await this.#device.close().catch((err: unknown) => {
        failure ??= err as Error;
      });
    }
    if (failure) throw failure;
  }

  // ─── internals: writes ────────────────────────────────────────────────────────────────────────────────────

  /**
   * Reads the container's reader table (read-only opens, in any process, register there before they read): each
   * holds the blocks of the checkpoint it reads, like a snapshot of that generation (-1 while it has not said which).
   */
  async #refreshReaders(): Promise<void> {
    const dev = this.#device;
    if (this.#opts.readOnly || dev.readerMarks === undefined) return;
    let marks: readonly (number | null)[];
    try {
      marks = await dev.readerMarks();
    } catch {
      // The table cannot be read now (a permission, a full descriptor table): keep every deferred block, as for a
      // reader that has not told its mark, and read it again after the next checkpoint. Space is only held longer.
      marks = [null];
    }
    let min = Infinity;
    for (const m of marks) min = Math.min(min, m ?? -1);
    this.#reclaimer.setExternalMin(min);
  }

  /** Whether `err` (or the state of the engine) says the engine was closed while an operation ran. */
  #closedUnder(err: unknown): boolean {
    return this.#closed || this.#closing !== undefined || (err instanceof VdeError && err.code === 'ERR_VDE_CLOSED');
  }

  #checkOpen(): void {
    if (this.#closed || this.#closing) throw new ClosedError('the engine is closed');
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.#opts.readOnly) throw new ReadOnlyError('the container is open read-only');
    if (this.#poisoned) throw this.#poisoned;
  }

  /**
   * For a write already admitted (it passed #checkWritable before close() was called): refused only once the engine
   * has closed or been poisoned. close() waits for admitted writes (#openWrites) before it closes.
   */
  #checkAdmitted(): void {
    if (this.#closed) throw new ClosedError('the engine is closed');
    if (this.#poisoned) throw this.#poisoned;
  }

  /** Writes a stream's (or large bytes') data ahead of the gate, its blocks registered as private while it runs (see store). */
  async #writeAhead(
    source: Uint8Array | AsyncIterable<unknown>,
    keyBytes: Uint8Array,
    meta: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ written: WrittenObject; track: Extent[] }> {
    const track: Extent[] = [];
    this.#privateExtents.add(track);
    try {
      return { written: await this.#io.write(source, Math.max(0, this.#inlineLimit(keyBytes, meta)), signal, track), track };
    } catch (err) {
      this.#privateExtents.delete(track); // the writer freed its blocks and emptied `track`
      throw err;
    }
  }

  #privateBlocks(): Extent[] {
    const out: Extent[] = [];
    // One push per extent: a spread of a large object's extents list (over ~120,000, from fragmented free space) was a
    // RangeError ("Maximum call stack size exceeded").
    for (const track of this.#privateExtents) for (const e of track) out.push(e);
    return out;
  }

  /** Frees the blocks of a stream written ahead that no store took over, and forgets them, in one synchronous step. */
  #dropAhead(ahead: { written: WrittenObject; track: Extent[] }): void {
    this.#privateExtents.delete(ahead.track);
    if (!this.#poisoned && ahead.written.extents && ahead.written.extents.length > 0) this.#allocator.free(ahead.written.extents);
  }

  /** An admitted write (store, delete, batch) has settled; wakes close() when it was the last one. */
  #endWrite(): void {
    if (--this.#openWrites === 0 && this.#writesDrained) {
      const wake = this.#writesDrained;
      this.#writesDrained = undefined;
      wake();
    }
  }

  #poison(err: unknown): void {
    if (this.#poisoned) return;
    const why = err instanceof Error ? err.message : String(err);
    this.#poisoned = new PoisonedError(`writes are refused after an I/O failure (${why}); close and reopen the container to recover`, {
      cause: err,
    });
  }

  /**
   * Upper bound of a PUT log payload. The index value is an inline record (exact size known when the data is in
   * memory and small), an extent record that fits the key's index entry, or a fixed-size indirect pointer.
   */
  #putPayloadBound(keyBytes: Uint8Array, meta: Uint8Array, source: unknown): number {
    const size = source instanceof Uint8Array ? source.byteLength : Infinity;
    // A record larger than an index entry is moved out of line: the payload then holds a pointer of fixed size.
    const outOfLine = Math.max(this.#maxValue(keyBytes), INDIRECT_BYTES);
    if (size <= this.#inlineLimit(keyBytes, meta)) return 2 + keyBytes.byteLength + Math.min(recordBytesFor(meta.byteLength, size, 0), outOfLine);
    if (size === Infinity) return 2 + keyBytes.byteLength + outOfLine; // a stream: its extent count is not known yet
    // Bytes of a known size get at most one extent per block (ObjectIo allocates ceil(size / blockSize) blocks): a
    // batch of 2 KB objects reserved a whole index entry (about 2 KB of log) each, and 61 of them were
    // ERR_VDE_TOO_LARGE under a 256 KiB log although their records hold about 50 bytes.
    const record = recordBytesFor(meta.byteLength, 0, Math.ceil(size / this.#device.blockSize));
    return 2 + keyBytes.byteLength + (record <= this.#maxValue(keyBytes) ? record : outOfLine);
  }

  /**
   * Objects up to this size live inline in their index entry (the fast paths' test). Negative when the key and
   * metadata leave no room even for an empty object: the slow path then writes an empty object as a record without
   * data (ObjectIo inlines every empty object), and moves that record out of line whole.
   */
  #inlineLimit(keyBytes: Uint8Array, meta: Uint8Array): number {
    return Math.min(Math.floor(this.#device.blockSize / 4), this.#maxValue(keyBytes) - recordBytesFor(meta.byteLength, 0, 0));
  }

  /** The largest index value that fits one entry with this key (larger records are stored indirect). */
  #maxValue(keyBytes: Uint8Array): number {
    return this.#index.maxEntryBytes - keyBytes.byteLength;
  }

  /**
   * Reserves log space before any lock is taken, so a store never waits for log space while it holds the gate
   * (which would deadlock against the checkpoint that frees the space).
   */
  async #withLogSpace<T>(bytes: number, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const reserving = this.#reserveLog(bytes, signal);
    if (reserving) await reserving;
    this.#writers++;
    try {
      return await fn();
    } finally {
      this.#walReserved -= bytes;
      this.#writers--;
    }
  }

  /** Reserves `bytes` of log space (synchronously when it is free); the caller gives it back when done. */
  #reserveLog(bytes: number, signal: AbortSignal | undefined): void | Promise<void> {
    if (bytes > this.#wal.capacityBytes / 2) {
      throw new TooLargeError(
        `the operation needs ${bytes} bytes of log, and one operation may use at most half of the ` +
          `${this.#wal.capacityBytes}-byte log (${Math.floor(this.#wal.capacityBytes / 2)} bytes): raise walSizeBytes or split the batch`,
      );
    }
    if (this.#checkpointWouldMakeRoom()) return this.#reserveLogAfterCheckpoint(bytes, signal);
    if (this.#wal.usedBytes + this.#walReserved + bytes <= this.#wal.capacityBytes) {
      this.#walReserved += bytes;
      return;
    }
    return this.#waitForLog(bytes, signal);
  }

  /**
   * At maxSizeBytes, whether a write would be refused for want of its reserve (free blocks below #reserveBlocks and
   * no growth left) while a checkpoint would give back at least the shortfall: the blocks of versions deleted or
   * replaced since the last one, and the dirty index pages (each counts twice in the reserve until flushed). A
   * container emptied by half refused every store with ERR_VDE_FULL until the caller ran checkpoint() (1,129 inline
   * objects of 900 B in 4 MiB, every other one deleted: the next stores all failed).
   */
  #checkpointWouldMakeRoom(): boolean {
    if (this.#opts.maxSizeBytes === Number.MAX_SAFE_INTEGER || this.#opts.readOnly) return false;
    if (this.#metaGrown()) return true;
    const short = this.#reserveBlocks() - this.#allocator.freeCount;
    if (short <= 0) return false;
    const limit = Math.floor(this.#opts.maxSizeBytes / this.#device.blockSize);
    if (this.#allocator.blockCount + short <= limit) return false;
    // The deferred entries the checkpoint frees shrink the next meta blob, which the reserve counts twice (not while a
    // snapshot or read holds deferred blocks: the checkpoint would free none of them, and add entries).
    const bs = this.#device.blockSize;
    const entries = this.#reclaimer.heldSnapshots === 0 && this.#reclaimer.activeReaders === 0 ? 2 * Math.floor((20 * this.#reclaimer.pendingEntryCount) / bs) : 0;
    return this.#reclaimable(short) + Math.ceil(this.#index.dirtyBytes / bs) + entries >= short;
  }

  /**
   * Blocks the next checkpoint would free, as far as `enough` needs to know: those of versions deleted or replaced
   * since the last one, or, with no snapshot or read holding any, every deferred block. Deletes made while a
   * snapshot was open were counted by a checkpoint that could not free them: after the release, stores at
   * maxSizeBytes were refused until the caller ran checkpoint().
   */
  #reclaimable(enough: number): number {
    const replaced = this.#replacedBlocks;
    if (replaced >= enough || this.#reclaimer.heldSnapshots > 0 || this.#reclaimer.activeReaders > 0) return replaced;
    return Math.max(replaced, this.#reclaimer.pendingBlocks);
  }

  /**
   * Runs that checkpoint (this write holds no lock yet: the same place where writes wait for log space), then
   * reserves the log space; a checkpoint that fails leaves the write to find out for itself (ERR_VDE_FULL).
   */
  async #reserveLogAfterCheckpoint(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    this.#pageStore.hurry();
    await this.#triggerCheckpoint().catch(() => undefined);
    throwIfAborted(signal);
    this.#checkAdmitted();
    if (this.#wal.usedBytes + this.#walReserved + bytes <= this.#wal.capacityBytes) {
      this.#walReserved += bytes;
      return;
    }
    return this.#waitForLog(bytes, signal);
  }

  #waitForLog(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    return (async () => {
      while (this.#wal.usedBytes + this.#walReserved + bytes > this.#wal.capacityBytes) {
        throwIfAborted(signal);
        this.#checkAdmitted();
        this.#pageStore.hurry(); // a store waits for the checkpoint now: no background pace for its flush ahead
        await this.#triggerCheckpoint();
      }
      this.#walReserved += bytes;
    })();
  }

  async #withWriteLocks<T>(keys: string[], signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const opts = signal ? { signal } : {};
    const gate = await this.#gate.shared(opts).catch(mapLockError);
    try {
      const region = await (keys.length === 1 ? this.#stripes.acquire(keys[0]!, opts) : this.#stripes.acquireMany(keys, opts)).catch(
        mapLockError,
      );
      try {
        this.#checkAdmitted();
        return await fn();
      } finally {
        region.release();
      }
    } finally {
      gate.release();
    }
  }

  async #append(type: number, payload: Uint8Array): Promise<void> {
    try {
      // A lone writer has nothing to overlap with its commit: it may skip the thread pool (see "Inline commits"). A
      // store still writing its data ahead of the gate is not counted in #writers yet, but its record comes soon.
      await this.#wal.append(type, payload, {
        durable: this.#opts.durability === 'sync',
        inline: this.#writers === 1 && this.#opts.inlineCommits && this.#privateExtents.size === 0,
      });
    } catch (err) {
      this.#poison(err);
      throw err;
    }
  }

  /**
   * Writes a version's data (and indirect record) and builds its index value. The key's stripe is held.
   * A small in-memory object whose index path is cached is prepared synchronously (no write, no await): the
   * previous version's creation time comes from a view of the cached leaf.
   */
  #preparePut(
    key: string,
    keyBytes: Uint8Array,
    source: Uint8Array | AsyncIterable<unknown>,
    meta: Uint8Array,
    signal: AbortSignal | undefined,
    early?: WrittenObject,
    fresh = false,
  ): PreparedPut | Promise<PreparedPut> {
    if (early) return this.#preparePutAsync(key, keyBytes, source, meta, signal, early);
    if (source instanceof Uint8Array && this.#allocator.freeCount >= this.#reserveBlocks()) {
      const view = this.#index.getCachedView(keyBytes, true);
      if (view === null || (view !== undefined && view[0] !== KIND_INDIRECT)) {
        if (source.byteLength <= this.#inlineLimit(keyBytes, meta)) {
          const createdMs = view && !fresh ? (this.#io.recordOf(view, `object ${key}`) as ObjectRecord).createdMs : undefined;
          return this.#encodePut(key, keyBytes, { size: source.byteLength, crc: objectCrc(source), inline: source }, meta, createdMs);
        }
      }
    }
    return this.#preparePutAsync(key, keyBytes, source, meta, signal, undefined, fresh);
  }

  async #preparePutAsync(
    key: string,
    keyBytes: Uint8Array,
    source: Uint8Array | AsyncIterable<unknown>,
    meta: Uint8Array,
    signal: AbortSignal | undefined,
    early?: WrittenObject,
    fresh = false,
  ): Promise<PreparedPut> {
    let prev: ObjectRecord | undefined;
    try {
      if (this.#allocator.freeCount < this.#reserveBlocks()) await this.#ensureHeadroom();
      // get() loads the path; the index change after the log append is then synchronous unless it was evicted
      // meanwhile (#apply falls back to loading it). A separate prefetch pass cost a second descent per store.
      const prevValue = await this.#index.get(keyBytes);
      const prevRecord = prevValue ? this.#io.recordOf(prevValue, `object ${key}`) : undefined;
      prev = prevRecord instanceof Promise ? await prevRecord : prevRecord;
    } catch (err) {
      // Blocks written ahead of the stripe (store) belong to no version yet.
      if (early?.extents && !this.#poisoned) this.#allocator.free(early.extents);
      throw err;
    }
    const inlineLimit = Math.max(0, this.#inlineLimit(keyBytes, meta));
    // Small in-memory objects are inlined without a write. Their bytes need no copy: the record is encoded from
    // them in the same synchronous run.
    const written: WrittenObject =
      early ??
      (source instanceof Uint8Array && source.byteLength <= inlineLimit
        ? { size: source.byteLength, crc: objectCrc(source), inline: source }
        : await this.#io.write(source, inlineLimit, signal));
    const direct = this.#encodePut(key, keyBytes, written, meta, fresh ? undefined : prev?.createdMs);
    if (direct.value.byteLength <= this.#maxValue(keyBytes)) return direct;
    // Too large for one index entry (many extents or large metadata): the record goes to its own blocks.
    const full = direct.value;
    const owned = direct.owned;
    try {
      const bs = this.#device.blockSize;
      const blocks = Math.ceil(full.byteLength / bs);
      const [run] = await this.#allocateContiguous(blocks);
      const padded = new Uint8Array(blocks * bs);
      padded.set(full);
      await this.#device.write(run.start, padded);
      owned.push(run);
      const value = encodeIndirect({ start: run.start, blocks, length: full.byteLength, crc: crc32(full) });
      return { key, keyBytes, value, record: direct.record, owned };
    } catch (err) {
      if (owned.length > 0) this.#allocator.free(owned);
      throw err;
    }
  }

  /**
   * Builds the record of a written version and its PUT log payload (u16 key length, key, record) in one buffer;
   * the index value is a view of the payload. The caller moves a record too large for an index entry out of line.
   */
  #encodePut(key: string, keyBytes: Uint8Array, written: WrittenObject, meta: Uint8Array, createdMs: number | undefined): PreparedPut {
    const now = Date.now();
    const record: ObjectRecord = {
      size: written.size,
      createdMs: createdMs ?? now,
      modifiedMs: now,
      crc: written.crc,
      nonce: (Math.random() * 0x1_0000_0000) >>> 0,
      metadata: meta,
    };
    if (written.extents) record.extents = written.extents;
    else if (written.inline) record.inline = written.inline;
    const recordBytes = recordBytesFor(meta.byteLength, written.inline?.byteLength ?? 0, written.extents?.length ?? 0);
    const kl = keyBytes.byteLength;
    const payload = newBytes(2 + kl + recordBytes);
    payload[0] = kl & 0xff;
    payload[1] = kl >>> 8;
    payload.set(keyBytes, 2);
    writeRecord(payload, 2 + kl, record);
    const owned = written.extents ? [...written.extents] : [];
    return { key, keyBytes, value: payload.subarray(2 + kl), payload, record, owned };
  }

  /** Applies a logged put to the index. An index failure after the log append poisons the engine. */
  /**
   * Applies logged changes to the index. All of them are applied in one synchronous run when their paths are
   * cached (the usual case: the caller prefetched them), so a reader sees all of a batch or none of it. If a path
   * was evicted meanwhile, the rest are applied with page loads in between. The previous versions' blocks are
   * deferred afterwards. An index failure after the log append poisons the engine.
   */
  #apply(changes: readonly IndexChange[]): void | Promise<void> {
    const previous: (Uint8Array | undefined)[] = [];
    let i = 0;
    try {
      for (; i < changes.length; i++) {
        const c = changes[i]!;
        const r = c.value ? this.#index.putCached(c.keyBytes, c.value) : this.#index.deleteCached(c.keyBytes);
        if (!r.done) break;
        this.#count(c, r.previous);
        previous.push(r.previous);
      }
    } catch (err) {
      this.#poison(err);
      throw err;
    }
    if (i === changes.length) return this.#deferPrevious(changes, previous);
    return this.#applySlow(changes, previous, i);
  }

  /** The rest of a batch whose paths were not all cached: pages are loaded between changes. */
  async #applySlow(changes: readonly IndexChange[], previous: (Uint8Array | undefined)[], from: number): Promise<void> {
    try {
      // Readers wait at the barrier until the whole batch is in.
      let open!: () => void;
      const mine = new Promise<void>((resolve) => (open = resolve));
      // Another slow apply may be in progress (a store's or a batch's, on other stripes): the barrier covers both.
      // (It used to be replaced by the newer one and cleared when that one finished first: a reader then saw part
      // of the older batch.)
      const earlier = this.#applyBarrier;
      this.#applyBarrier = earlier ? Promise.all([earlier, mine]).then(() => undefined) : mine;
      this.#slowApplies++;
      try {
        for (let i = from; i < changes.length; i++) {
          const c = changes[i]!;
          const p = c.value ? await this.#index.put(c.keyBytes, c.value) : await this.#index.delete(c.keyBytes);
          this.#count(c, p);
          previous.push(p);
        }
      } finally {
        if (--this.#slowApplies === 0) this.#applyBarrier = undefined;
        open();
      }
    } catch (err) {
      this.#poison(err);
      throw err;
    }
    await this.#deferPrevious(changes, previous);
  }

  /** Defers the blocks of the versions the changes replaced; synchronous unless one of them is an indirect record. */
  #deferPrevious(changes: readonly IndexChange[], previous: readonly (Uint8Array | undefined)[]): void | Promise<void> {
    try {
      for (let j = 0; j < previous.length; j++) {
        const p = previous[j];
        if (!p) continue;
        const found = this.#ownedBlocks(p, `previous version of ${changes[j]!.key}`);
        if (found instanceof Promise) return this.#deferRest(changes, previous, j, found);
        this.#deferReplaced(found);
      }
    } catch (err) {
      this.#poison(err);
      throw err;
    }
  }

  async #deferRest(
    changes: readonly IndexChange[],
    previous: readonly (Uint8Array | undefined)[],
    j: number,
    first: Promise<Extent[]>,
  ): Promise<void> {
    try {
      this.#deferReplaced(await first);
      for (let k = j + 1; k < previous.length; k++) {
        const p = previous[k];
        if (!p) continue;
        const found = this.#ownedBlocks(p, `previous version of ${changes[k]!.key}`);
        this.#deferReplaced(found instanceof Promise ? await found : found);
      }
    } catch (err) {
      this.#poison(err);
      throw err;
    }
  }

  #count(change: IndexChange, previous: Uint8Array | undefined): void {
    if (change.value && !previous) this.#objectCount++;
    if (!change.value && previous) this.#objectCount--;
  }

  /** Defers the blocks of a version a write replaced (free after the next checkpoint), and counts them. */
  #deferReplaced(extents: readonly Extent[]): void {
    this.#reclaimer.defer(extents, this.#sb.generation);
    for (const e of extents) this.#replacedBlocks += e.count;
  }

  #afterWrite(): void {
    const walFull = this.#wal.fillRatio * 100 >= this.#opts.checkpointWalUtilizationPercent;
    const dirtyFull = this.#index.dirtyBytes > this.#opts.cacheSizeBytes / 2;
    // Blocks of replaced and deleted versions come back only with a checkpoint: without this, overwriting large
    // objects (small log records) grew the container by 25% after 25% and never checkpointed (200 keys of up to
    // 100 KB overwritten 55 times: 335 MiB for 5.4 MiB of objects). A quarter of the container replaced since the
    // last checkpoint (the growth step) starts one.
    const replacedFull = this.#replacedBlocks >= REPLACED_MIN_BLOCKS && this.#replacedBlocks * 4 >= this.#allocator.blockCount;
    if ((walFull || dirtyFull || replacedFull || this.#metaGrown()) && !this.#autoCheckpoint) void this.#triggerCheckpoint().catch(() => undefined);
  }

  /**
   * Near maxSizeBytes, whether the next meta blob has grown by a block since the last checkpoint (deferred frees, an
   * entry each): a checkpoint then frees them, and the reserve (#reserveBlocks, which counts the blob) shrinks again.
   * Without it, 64 writers at a 4 MiB limit with 512-byte blocks were refused 1.5 times as often as with the run
   * held for the meta blob before (whose trigger, three quarters of a run sized from the cut-up free space, fired
   * about as often).
   */
  #metaGrown(): boolean {
    if (this.#metaAtCheckpoint === 0 || this.#opts.maxSizeBytes === Number.MAX_SAFE_INTEGER) return false;
    const need = this.#metaBlocksNeeded();
    if (need <= this.#metaAtCheckpoint || !this.#atLimit(2 * need)) return false;
    // (Not while a snapshot or read holds deferred blocks: the checkpoint would free none of them, and the index pages
    // it replaces would be held too.)
    return this.#reclaimer.heldSnapshots === 0 && this.#reclaimer.activeReaders === 0;
  }

  /**
   * Starts a checkpoint unless one is already pending, and returns it. Never called with a lock held. An automatic
   * checkpoint first flushes the dirty index pages while stores go on (#runPreflush), so that the part under the
   * exclusive gate writes only what changed meanwhile.
   */
  #triggerCheckpoint(): Promise<unknown> {
    if (!this.#autoCheckpoint) {
      this.#autoCheckpoint = this.#runPreflush()
        .then(() => this.#runCheckpoint({}))
        .finally(() => {
          this.#autoCheckpoint = undefined;
        });
    }
    return this.#autoCheckpoint;
  }

  /**
   * The flush ahead of an automatic checkpoint, with the gate held shared (as a store holds it): stores go on
   * meanwhile, and check() and checkpoints, which take it exclusively, wait for it. Before, every store
   * waited for the whole checkpoint: 170-230 ms for 7,200 dirty pages (copy-on-write, writes, a 28 MiB fsync)
   * every 20,000 stores of 1 KiB. The B-tree's flush is safe beside mutations (its page images are taken
   * synchronously; pages changed meanwhile stay dirty for the next flush). Its pages go to new blocks that the
   * durable checkpoint does not reference, so a crash meanwhile loses nothing: recovery replays the log from the
   * durable checkpoint, and the blocks are free in its bitmap. The blocks of the durable tree it replaces are
   * deferred to the next checkpoint, as a checkpoint's own flush does. It runs in the checkpoint chain, so no
   * checkpoint encodes the allocator between its flush and that deferral. Its writes are durable ones where the
   * device has `writeDurable` (`DevicePageStore.durableWrites`), so that the log's batches keep their one-write
   * path, until someone waits for the checkpoint (`DevicePageStore.hurry()`). Any failure poisons the engine, as
   * one of a checkpoint's flush does.
   */
  #runPreflush(): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.#closed || this.#closing || this.#poisoned || this.#opts.readOnly) return;
      if (this.#index.dirtyBytes < PREFLUSH_MIN_PAGES * this.#device.blockSize) return;
      // The gate in shared mode, as a store takes it: stores go on, but check() and anything else that takes it
      // exclusively waits for the flush (between its copy-on-write and the deferral of the pages it replaced,
      // those pages are allocated and neither in the tree nor in the deferred-free list).
      const guard = await this.#gate.shared().catch(mapLockError);
      try {
        await this.#preflushLocked();
      } finally {
        guard.release();
      }
    };
    const p = this.#checkpointTail.then(run, run);
    this.#checkpointTail = p.catch(() => undefined);
    return p;
  }

  async #preflushLocked(): Promise<void> {
    // The caller holds the gate in shared mode.
    if (this.#closed || this.#closing || this.#poisoned) return;
    const generation = this.#sb.generation;
    try {
      await this.#ensureFree(this.#checkpointBlocks());
      if (this.#closed || this.#closing || this.#poisoned) return;
      // Disk space for the flush's blocks first (see #checkpointLocked): a failure here changes nothing.
      await this.#backFlush(this.#flushPages());
    } catch (err) {
      // A full container (or file system): the checkpoint itself flushes (it needs the same blocks, and frees what
      // it can), and fails with ERR_VDE_FULL if it cannot.
      if (err instanceof FullError) return;
      throw err;
    }
    if (this.#closed || this.#closing || this.#poisoned) {
      this.#pageStore.releasePool();
      return;
    }
    // Only flushes write index pages, one at a time (the B-tree chains them), and the checkpoint's waits for
    // this run: every page written while the flag is set is this flush's.
    this.#pageStore.durableWrites = true;
    try {
      let flushed: { freedPages: number[] };
      try {
        flushed = await this.#index.flush();
      } finally {
        this.#pageStore.releasePool();
      }
      const { freedPages } = flushed;
      this.#deferPages(freedPages, generation);
      this.#preflushes++;
    } catch (err) {
      this.#poison(err);
      throw err;
    } finally {
      this.#pageStore.durableWrites = false;
    }
  }

  // ─── internals: space ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * What a store must leave free: twice what the next checkpoint needs, plus headroom for the index changes of
   * every write in flight (each one's pages become dirty only when it is applied, after its check).
   *
   * Invariant: free blocks >= #checkpointBlocks() whenever no store is between its check and its apply beyond what
   * this slack covers, so a checkpoint (and with it delete, close and reopen) can always run, also in a container
   * at maxSizeBytes where stores are refused. Deletes and checkpoints check only #checkpointBlocks() (plus a
   * delete's own index change): a full container can always be emptied.
   */
  #reserveBlocks(): number {
    const pages = Math.ceil(this.#index.dirtyBytes / this.#device.blockSize);
    // The meta blob as it really is: its deferred entries too (20 bytes per entry; while a snapshot holds replaced
    // blocks they are not freed by a checkpoint, and counting only the bitmap let stores and deletes use up the room
    // of the checkpoint that deletes the snapshot), with an entry more per write in flight (the version it replaces).
    const meta = this.#metaBlocksNeeded(0, 3 * this.#writers + this.#deleteEntriesInFlight);
    const image = Math.ceil((BitmapAllocator.serializedByteLength(this.#allocator.blockCount) + 64) / this.#device.blockSize);
    return this.#headroom + 2 * pages + image + meta + this.#metaGrowth(meta) + this.#writerHeadroom() * this.#writers + this.#batchHeadroom;
  }

  /**
   * Blocks counted for each write in flight. With the full slack, WRITER_HEADROOM_BLOCKS: a write applied after its
   * check creates at most one page per level plus a new root and dirties its path, at most 2 * (depth + 1) blocks in
   * all (created ones taken, dirtied ones counted twice by the reserve), and the slack of 256 covers what 64 writers
   * in trees of up to 4 levels need beyond 4 each. With a smaller slack (a small maxSizeBytes), the full count.
   */
  #writerHeadroom(): number {
    if (this.#headroom >= HEADROOM_BLOCKS) return WRITER_HEADROOM_BLOCKS;
    return Math.max(WRITER_HEADROOM_BLOCKS, 2 * (this.#index.stats().depth + 2));
  }

  /**
   * What a delete asks to be free beyond the next checkpoint's needs: its own index change (its path and the pages
   * merges dirty, at most 2 * depth + 1). It must stay below what a store leaves free (#reserveBlocks with one
   * writer), or a container that stores filled could not be emptied: with the smaller slack of a small container,
   * the same count as a store's.
   */
  #deleteHeadroom(): number {
    return this.#headroom >= HEADROOM_BLOCKS ? DELETE_HEADROOM_BLOCKS : this.#writerHeadroom();
  }

  /**
   * Blocks a batch of `count` operations that inserts `bytes` of index entries may need beyond a writer's headroom:
   * the index pages its inserts create when it is applied (after its record is durable, so they must be free before)
   * and the pages it dirties, which the next checkpoint writes. Pages split at most in halves: an insert of B bytes
   * creates at most 2B/page + 2 per level. Dirtied pages: at most a path per operation, and never more than the
   * index holds.
   */
  #batchBlocks(bytes: number, count: number): number {
    const stats = this.#index.stats();
    const levels = Math.max(1, stats.depth) + 1;
    // Index pages in all: known for a tree made in this process; after a reopen, bounded by the blocks in use past
    // the log (index pages and object data): the whole used area, log included, made a 5,000-put batch in a fresh
    // container reserve (and grow by) 40 MB.
    const pages = stats.pages >= 0 ? stats.pages : this.#allocator.blockCount - this.#allocator.freeCount - (this.#sb.walStart + this.#sb.walBlocks);
    return this.#createdPages(bytes, levels) + Math.min(count * levels, Math.max(0, pages));
  }

  /** See #batchBlocks: the index pages that inserting `bytes` of entries may create in a tree of `levels` - 1 levels. */
  #createdPages(bytes: number, levels = Math.max(1, this.#index.stats().depth) + 1): number {
    return Math.ceil((2 * bytes) / this.#device.blockSize) + 2 * levels;
  }

  /**
   * Blocks the next checkpoint needs: a new block for each dirty index page (a copy-on-write flush writes each one
   * to a fresh block at most once; pages created since the last flush already have theirs) and the meta blob.
   */
  #checkpointBlocks(adding = 0): number {
    return Math.ceil(this.#index.dirtyBytes / this.#device.blockSize) + this.#metaBlocksNeeded(adding);
  }

  /**
   * Blocks a flush takes for its copy-on-write (one per dirty page at most), with a little more for pages that
   * stores running beside a flush ahead create meanwhile (they take the flush's backed blocks first).
   */
  #flushPages(): number {
    const dirty = Math.ceil(this.#index.dirtyBytes / this.#device.blockSize);
    return dirty === 0 ? 0 : dirty + 2 * (Math.max(1, this.#index.stats().depth) + 1);
  }

  /**
   * Index mutations allocate pages synchronously (splits, copy-on-write), so every store and delete makes sure,
   * before its log record, that the reserve is there: a full container then fails the operation cleanly with
   * ERR_VDE_FULL instead of failing the index change after the record is durable.
   */
  async #ensureHeadroom(): Promise<void> {
    while (this.#allocator.freeCount < this.#reserveBlocks()) await this.#grow(this.#reserveBlocks() - this.#allocator.freeCount, 0);
  }

  /**
   * Blocks for data. Refused once the engine is poisoned: a checkpoint applies the frees its new bitmap records
   * before it writes its superblock (the old checkpoint's pages and meta blob, versions replaced since), so if it
   * fails, blocks the durable checkpoint and the log still reference are free in memory, and a write to one of them
   * would damage what recovery reads.
   */
  async #allocateData(blocks: number, track?: Extent[]): Promise<Extent[]> {
    let reclaimed = false;
    for (;;) {
      if (this.#poisoned) throw this.#poisoned;
      if (this.#allocator.freeCount >= blocks + this.#reserveBlocks()) {
        const got = this.#allocator.allocate(blocks);
        // One push per extent: a spread of over ~120,000 extents (a large object in fragmented free space) threw a
        // RangeError here, after the allocation and before the writer knew of its blocks: leaked for good.
        if (track) for (const e of got) track.push(e);
        return got;
      }
      try {
        await this.#grow(blocks + this.#reserveBlocks() - this.#allocator.freeCount, blocks);
      } catch (err) {
        // At maxSizeBytes, the blocks of objects deleted or replaced since the last checkpoint come back only with
        // one: a container emptied by half still refused every store until the caller checkpointed. A write ahead
        // of the gate (`track`: it holds no lock a checkpoint waits for) runs one and tries once more.
        if (!(err instanceof FullError) || track === undefined || reclaimed || this.#reclaimable(1) === 0) throw err;
        reclaimed = true;
        try {
          await this.#triggerCheckpoint();
        } catch {
          throw err;
        }
      }
    }
  }

  /** A contiguous run (an indirect record); refused once poisoned, as #allocateData. */
  async #allocateContiguous(blocks: number): Promise<[Extent]> {
    for (;;) {
      if (this.#poisoned) throw this.#poisoned;
      if (this.#allocator.freeCount >= blocks + this.#reserveBlocks() && this.#allocator.largestFreeRun >= blocks) {
        const [run] = this.#allocator.allocate(blocks, { contiguous: true });
        if (run) return [run];
      }
      await this.#grow(Math.max(blocks, blocks + this.#reserveBlocks() - this.#allocator.freeCount), blocks);
    }
  }

  /**
   * Grows the container by at least `minBlocks` (about 25% at a time), up to maxSizeBytes; `demand` is the number
   * of blocks the caller is about to allocate (0 for headroom). Single-flight: a caller that finds a growth in
   * flight waits for it and re-checks, rather than grow again (64 waiting writers would otherwise each grow the
   * file by another 25%). A growth starts one macrotask after it is asked for and is sized for every request made
   * meanwhile (their demands summed, plus the reserve): a burst of large stores asks in one turn, and growing once
   * for all of them beats 25% steps in a row, each of which waits in the thread pool behind the data writes
   * already queued.
   */
  async #grow(minBlocks: number, demand: number): Promise<void> {
    const limit = Math.floor(this.#opts.maxSizeBytes / this.#device.blockSize);
    if (this.#allocator.blockCount + minBlocks > limit) {
      throw new FullError(`the container would exceed maxSizeBytes (${this.#opts.maxSizeBytes} bytes)`);
    }
    if (this.#growing) {
      // Joins the growth in flight; its request counts only while that growth is not sized yet (a caller that
      // comes later re-checks after it and asks again if it still lacks space).
      if (!this.#growSized) {
        this.#growDemand += demand;
        this.#growFloor = Math.max(this.#growFloor, minBlocks);
      }
      await this.#growing;
      return;
    }
    this.#growDemand = demand;
    this.#growFloor = minBlocks;
    this.#growSized = false;
    const growing = (async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.#growSized = true;
      const current = this.#allocator.blockCount;
      const deficit = this.#growDemand + this.#reserveBlocks() - this.#allocator.freeCount;
      // The usual 25% step comes on top of a burst's deficit: sized to the block, one more block of reserve (the
      // dirty index grows as the burst's records are applied) meant a second growth in the middle of the burst.
      const step = Math.max(Math.ceil(current * 0.25), 256);
      let wanted = Math.min(limit, Math.max(current + this.#growFloor, current + Math.max(deficit, 0) + step));
      try {
        await this.#device.grow(wanted);
      } catch (err) {
        // The disk or the process's file-size limit refused the step sized for the whole burst (ENOSPC, EFBIG): grow
        // by what the largest single request needs. The callers re-check, and those whose blocks are there now go in;
        // before, every store of the burst failed ERR_VDE_FULL together (40 stores of 200 KB where 20 fit: 0 stored).
        const least = current + this.#growFloor;
        if (!(err instanceof FullError) || least >= wanted) throw err;
        await this.#device.grow(least);
        wanted = least;
      }
      this.#allocator.grow(wanted);
    })();
    this.#growing = growing;
    try {
      await growing;
    } finally {
      if (this.#growing === growing) this.#growing = undefined;
    }
  }

  #applyFrees(extents: readonly Extent[]): void {
    if (extents.length > 0 && !this.#opts.readOnly) this.#allocator.free(extents);
  }

  // ─── internals: checkpoint ────────────────────────────────────────────────────────────────────────────────

  /** Runs a checkpoint after any running one, under the exclusive gate. */
  #runCheckpoint(extra: CheckpointExtra): Promise<CheckpointResult> {
    // A flush ahead still running is now on this checkpoint's path: its remaining writes go out at full pace.
    this.#pageStore.hurry();
    // Callers checked that the engine is writable; a write that close() waits for may still need a checkpoint
    // (its log space), so only a finished close or poison stops one here.
    const run = async (): Promise<CheckpointResult> => {
      this.#checkAdmitted();
      const guard = await this.#gate.exclusive().catch(mapLockError);
      try {
        this.#checkAdmitted();
        return await this.#checkpointLocked(extra);
      } finally {
        guard.release();
      }
    };
    const p = this.#checkpointTail.then(run, run);
    this.#checkpointTail = p.catch(() => undefined);
    return p;
  }

  /**
   * The checkpoint proper; the caller holds the gate exclusively (or is format/close), so the index is a cut of
   * completed stores. Order: index pages (copy-on-write) → meta blob → fsync → superblock → fsync → log truncate.
   * No block the durable checkpoint references is written before the new superblock is durable. Any failure
   * after the index flush poisons the engine (the in-memory state is no longer a clean cut to resume from).
   */
  async #checkpointLocked(extra: CheckpointExtra): Promise<CheckpointResult> {
    const old = this.#sb;
    const generation = old.generation + 1;
    // A superblock holds integers below 2^53; only a damaged or crafted file gets here, and a superblock written
    // past the limit would be refused by every later open.
    if (!Number.isSafeInteger(generation)) throw new CorruptionError('superblock', `generation ${old.generation} cannot grow`);
    if (extra.addSnapshot !== undefined || extra.snapshotDeleted) {
      // The change lives only in this checkpoint's meta blob: a durable MARK record gives the checkpoint a log
      // position of its own, so a damaged superblock later cannot silently roll the change back (see #load).
      try {
        await this.#wal.append(LOG_MARK, new Uint8Array(0), { durable: true });
      } catch (err) {
        this.#poison(err);
        throw err;
      }
    }
    const checkpointLsn = this.#wal.lastLsn;
    const bs = this.#device.blockSize;
    // Room for the flush and the meta blob, before anything is written (what it needs, not a store's reserve: a
    // checkpoint must run in a container at maxSizeBytes, where it is what frees deleted objects' blocks).
    const adding = extra.addSnapshot === undefined ? 0 : 1;
    const metaNeeded = this.#metaBlocksNeeded(adding);
    await this.#ensureFree(this.#checkpointBlocks(adding), metaNeeded);
    // The meta blob's runs are taken first: the flush's pages, taken one by one, could use up the blocks that were
    // just made sure of (the checkpoint then failed with ERR_VDE_FULL after its flush, which poisons). They are taken
    // before the eligible frees below are applied, too.
    let metaRuns = this.#allocateMeta(metaNeeded);
    // Disk space for every block the flush and the meta blob write, before anything changes: on a full file
    // system (a sparse container's holes), ENOSPC then fails the checkpoint with ERR_VDE_FULL and nothing else.
    try {
      await this.#backFlush(this.#flushPages(), metaRuns);
    } catch (err) {
      this.#allocator.free(metaRuns);
      throw err;
    }
    try {
      let flushed: { root: number; freedPages: number[] };
      try {
        flushed = await this.#index.flush();
      } finally {
        this.#pageStore.releasePool();
      }
      const { root, freedPages } = flushed;
      this.#deferPages(freedPages, old.generation);
      for (const r of this.#metaRuns) this.#reclaimer.deferMeta(r, old.generation);
      const createdMs = Date.now();
      if (extra.addSnapshot !== undefined) {
        this.#named.set(extra.addSnapshot, { name: extra.addSnapshot, generation, root, createdMs, objectCount: this.#objectCount });
        this.#reclaimer.holdSnapshot(generation);
      }
      if (extra.holdSnapshot) this.#reclaimer.holdSnapshot(generation);
      // Only blocks freed before the durable checkpoint was made go free in this image: a read-only open (maybe in
      // another process) may be reading the durable checkpoint right now, having registered after the reader table
      // was last read. Blocks freed since are taken after this checkpoint is durable and the table read again.
      const eligible = this.#reclaimer.takeEligible(old.generation);
      this.#applyFrees(eligible);
      const listed = [...this.#named.values()];
      // Blocks of streams still being written ahead of the gate are free in the image: nothing it describes refers
      // to them, and a crash before their store commits must not leave them allocated (leaked). The block count is
      // taken with the image: such a stream may grow the container while this checkpoint writes, and then the
      // image may outgrow the run (its bitmap is larger): the run is taken again, as large as it needs.
      let allocatorImage: Uint8Array;
      let imageBlockCount: number;
      let meta: Uint8Array;
      let spans: boolean;
      for (;;) {
        // Old meta blobs before the one this checkpoint replaces are free in the image (see Reclaimer.metaBefore):
        // listed, a reopen could not tell them from other deferred frees, and named snapshots then held them.
        allocatorImage = this.#allocator.serialize({ asFree: [...this.#privateBlocks(), ...this.#reclaimer.metaBefore(old.generation)] });
        imageBlockCount = this.#allocator.blockCount;
        // Version 1 (one run, readable by the previous release) whenever it can; version 2 when the blob spans runs
        // or the blob it replaces did (a version 1 blob lists that one as one deferred entry; FORMAT.md).
        const replaced = this.#reclaimer.metaEntries(old.generation);
        spans = metaRuns.length > 1 || replaced.length > 1;
        meta = spans
          ? encodeMeta({ allocatorImage, deferred: this.#reclaimer.heldEntries(), snapshots: listed, extents: metaRuns.slice(1), replacedMeta: replaced })
          : encodeMeta({ allocatorImage, deferred: this.#reclaimer.pendingEntries(old.generation), snapshots: listed });
        if (meta.byteLength <= runBlocks(metaRuns) * bs) break;
        // Outgrown (a stream grew the container, so the bitmap is larger; or more runs, 12 bytes each): taken again,
        // as large as it needs and a block more.
        this.#allocator.free(metaRuns);
        const need = Math.ceil(meta.byteLength / bs) + 1;
        await this.#ensureFree(need, need);
        metaRuns = this.#allocateMeta(need);
        await this.#backFlush(0, metaRuns);
      }
      // The logical blob, run after run, each run padded to its blocks.
      let at = 0;
      for (const r of metaRuns) {
        const padded = new Uint8Array(r.count * bs);
        padded.set(meta.subarray(at, Math.min(meta.byteLength, at + r.count * bs)));
        await this.#device.write(r.start, padded);
        at += r.count * bs;
      }
      await this.#device.sync();
      const sb: Superblock = {
        ...old,
        version: spans ? 2 : 1,
        generation,
        checkpointLsn,
        blockCount: imageBlockCount,
        indexRoot: root,
        metaStart: metaRuns[0]!.start,
        metaBlocks: metaRuns[0]!.count,
        metaLength: meta.byteLength,
        metaCrc: metaChecksum(meta),
        objectCount: this.#objectCount,
        checkpointMs: createdMs,
      };
      await this.#device.write(generation % 2 === 1 ? 0 : 1, encodeSuperblock(sb, bs));
      await this.#device.sync();
      this.#sb = sb;
      this.#metaRuns = metaRuns;
      this.#metaRunBlocks = runBlocks(metaRuns);
      this.#checkpoints++;
      this.#replacedBlocks = 0;
      if (checkpointLsn > 0) await this.#wal.truncate(checkpointLsn);
      // Every reader that may read an older checkpoint registered before this one was durable: it is in the table.
      this.#reclaimer.setDurableNamedMin(oldestGeneration(listed));
      await this.#refreshReaders();
      // Blocks freed a turn later are only free later: taken out of the deferred list at once, freed in slices.
      const nowFree = this.#reclaimer.takeEligible(generation);
      for (let i = 0; i < nowFree.length; i += FREE_TURN_EXTENTS) {
        if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        this.#applyFrees(nowFree.slice(i, i + FREE_TURN_EXTENTS));
      }
      this.#metaAtCheckpoint = this.#metaBlocksNeeded();
      return { generation, root, objects: sb.objectCount };
    } catch (err) {
      this.#poison(err);
      throw err;
    }
  }

  /**
   * `DevicePageStore.back()` (disk space for what a flush writes, claimed before anything changes), when the disk
   * may be short of it: writing zeros first doubled a checkpoint's page writes (median 105 → 180 ms after 20,000
   * stores of 2 KB), so a container file whose file system has room to spare (four times what the flush may
   * claim, and 64 MiB) skips it. A device without a path (any other BlockDevice) backs always.
   */
  async #backFlush(pages: number, extra: readonly Extent[] = []): Promise<void> {
    if (this.#path !== undefined) {
      let blocks = this.#pageStore.unbackedCount + pages;
      for (const e of extra) blocks += e.count;
      try {
        const st = await fs.statfs(this.#path);
        if (st.bavail * st.bsize >= 4 * blocks * this.#device.blockSize + (64 << 20)) return;
      } catch {
        // No statfs: back the blocks.
      }
    }
    await this.#pageStore.back(pages, extra);
  }

  /**
   * Takes the runs for a meta blob of `blocks` blocks: one run where one is free (a version 1 blob), else the free
   * holes it needs (a version 2 blob, FORMAT.md). ERR_VDE_FULL, nothing taken, if the blocks are not free.
   */
  #allocateMeta(blocks: number): Extent[] {
    if (this.#allocator.largestFreeRun >= blocks) return this.#allocator.allocate(blocks, { contiguous: true });
    if (this.#allocator.freeCount < blocks) throw new FullError(`no room for the checkpoint meta blob (${blocks} blocks)`);
    return this.#allocator.allocate(blocks);
  }

  /** Index pages a flush replaced: free once a checkpoint newer than `generation` no longer references them. */
  #deferPages(pages: readonly number[], generation: number): void {
    this.#reclaimer.defer(
      pages.map((p) => ({ start: p, count: 1 })),
      generation,
    );
  }

  /**
   * Grows the container until `blocks` are free and, while it can grow, the longest free run holds `run` blocks (a
   * meta blob in one run, the version 1 format the previous release reads). At maxSizeBytes the free count alone
   * matters: a meta blob then spans the free holes (FORMAT.md, "Meta blob, version 2"). ERR_VDE_FULL if the blocks
   * cannot be free.
   */
  async #ensureFree(blocks: number, run = this.#metaBlocksNeeded()): Promise<void> {
    while (this.#allocator.freeCount < blocks || this.#allocator.largestFreeRun < Math.min(blocks, run)) {
      const short = Math.max(0, blocks - this.#allocator.freeCount);
      const want = Math.max(short, run);
      if (this.#atLimit(want)) {
        if (short === 0) return;
        await this.#grow(short, 0);
      } else {
        await this.#grow(want, 0);
      }
    }
  }

  /**
   * Makes sure (growing the container if it may) that a delete, or a batch with `deletes` deletes, leaves room for
   * the next checkpoint: its index pages and its meta blob with the entries these deletes and the writes in flight
   * add (#metaEntriesFor), and the delete's own index change (#deleteHeadroom); else ERR_VDE_FULL before anything is
   * written. While a snapshot holds the blocks of deleted objects a delete frees nothing and adds an entry to the
   * meta blob: deletes went on until no checkpoint fitted, and then every checkpoint, deleteSnapshot() and close()
   * failed ERR_VDE_FULL, also after reopens. Counts only: a blob spans free holes (FORMAT.md, "Meta blob, version 2").
   */
  async #ensureDeleteRoom(deletes: number): Promise<() => void> {
    for (;;) {
      const need = this.#deleteRoom(deletes);
      if (this.#allocator.freeCount >= need) {
        // Counted from here (synchronously after the check) until the caller has applied its deletes or failed: their
        // entries are then in the reclaimer or the index. Before, each of 64 concurrent batches of 37 deletes saw the
        // others as 3 entries (a write in flight) and all passed, and the checkpoint that deletes the snapshot no
        // longer fitted (review h8).
        const entries = this.#metaEntriesFor(deletes);
        this.#deleteEntriesInFlight += entries;
        let counted = true;
        return () => {
          if (counted) this.#deleteEntriesInFlight -= entries;
          counted = false;
        };
      }
      try {
        await this.#ensureFree(need, 1);
      } catch (err) {
        if (!(err instanceof FullError)) throw err;
        throw new FullError(
          `the container is at maxSizeBytes (${this.#opts.maxSizeBytes} bytes) and the next checkpoint needs ${need} free blocks: ` +
            this.#deleteRoomAdvice(deletes),
        );
      }
    }
  }

  /**
   * What holds the room a refused delete call needed, for its ERR_VDE_FULL message: the caller can act only on what is
   * named. Before, every refusal with a read in flight (a paused read stream, a list) told the caller to release
   * snapshots it did not have, and one with only other writes in flight to delete fewer keys (review h9).
   */
  #deleteRoomAdvice(deletes: number): string {
    const advice: string[] = [];
    const snapshots = this.#reclaimer.heldSnapshots;
    const readers = this.#reclaimer.activeReaders;
    const others = Math.max(0, this.#writers - 1);
    if (snapshots > 0) advice.push(`release or delete the ${snapshots} snapshot${snapshots === 1 ? '' : 's'} holding deleted objects, then checkpoint`);
    if (readers > 0) advice.push(`finish or destroy the ${readers} read${readers === 1 ? '' : 's'} in progress (read streams, list iterators, pending retrieves), then checkpoint`);
    if (others > 0 || this.#deleteEntriesInFlight > 0) advice.push('retry once the stores and deletes in flight have finished');
    if (deletes > 1) advice.push(`or delete fewer keys at a time (this call deletes ${deletes})`);
    if (advice.length === 0) advice.push('checkpoint, then retry');
    return advice.join('; ');
  }

  /** Free blocks a delete call of `deletes` deletes asks for (see #ensureDeleteRoom). */
  #deleteRoom(deletes: number): number {
    const inFlight = Math.max(0, this.#writers - 1);
    const meta = this.#metaBlocksNeeded(0, this.#metaEntriesFor(deletes) + 3 * inFlight + this.#deleteEntriesInFlight);
    return Math.ceil(this.#index.dirtyBytes / this.#device.blockSize) + meta + this.#metaGrowth(meta) + this.#deleteHeadroom() + 2 * inFlight;
  }

  /**
   * Room a checkpoint needs beyond its own meta blob of `meta` blocks while a snapshot or read holds deferred blocks:
   * what that blob has grown past the current one. The current blob is freed only once the new one is durable, and
   * the entries it gained are not freed by that checkpoint, so the checkpoint after it needs as much again. Without
   * it, a checkpoint under a snapshot that took 144 blocks for a blob replacing one of about 110 (687 index pages
   * merged away by batches of deletes became deferred entries) left 120 free blocks where the next one, the one that
   * deletes the snapshot, needed 149: ERR_VDE_FULL for good (review h8).
   */
  #metaGrowth(meta: number): number {
    const growth = meta - this.#metaRunBlocks;
    if (growth <= 0 || (this.#reclaimer.heldSnapshots === 0 && this.#reclaimer.activeReaders === 0)) return 0;
    return growth;
  }

  /** Whether a delete call of `deletes` deletes would be refused at maxSizeBytes (see #ensureDeleteRoom). */
  #metaRoomShort(deletes: number): boolean {
    const short = this.#deleteRoom(deletes) - this.#allocator.freeCount;
    return short > 0 && this.#atLimit(short);
  }

  /** Whether growing the container by `blocks` would pass maxSizeBytes. */
  #atLimit(blocks: number): boolean {
    return this.#allocator.blockCount + blocks > Math.floor(this.#opts.maxSizeBytes / this.#device.blockSize);
  }

  /**
   * Meta blob entries that `deletes` deletes (one call: a delete, or a batch) may add: per delete its object's extent
   * (most objects have one, inline ones none) and the leaf and branch page it dirties, and per call DELETE_META_ENTRIES
   * extents more and a path of pages (#metaBlocksNeeded rounds up a block besides). Counted in blocks (one block more
   * per delete) instead, a container at maxSizeBytes whose free space stores had cut into runs of 4 blocks refused
   * every delete, with no snapshot held: it could not be emptied; counted as a whole path and 8 extents per delete, a
   * batch of 1,000 deletes asked for a run of 651 blocks.
   */
  #metaEntriesFor(deletes: number): number {
    return 3 * deletes + DELETE_META_ENTRIES + Math.max(1, this.#index.stats().depth) + 1;
  }

  /**
   * Before a delete takes its locks (where writes wait for log space): when the meta blob has outgrown its room, the
   * checkpoint that frees its deferred entries runs first. Deletes called one after another while an automatic
   * checkpoint was still flushing outgrew the room and were refused ERR_VDE_FULL in a container being emptied, with
   * no snapshot held. What a checkpoint cannot free (a snapshot holds it) is refused by #ensureDeleteRoom.
   */
  #makeMetaRoom(deletes: number): Promise<void> | undefined {
    // While a snapshot or a read holds deferred blocks, a checkpoint may free none of the entries, and adds one (the
    // meta blob it replaces): checkpoints run for refused deletes then used up the room they were meant to make.
    if (this.#opts.readOnly || this.#reclaimer.heldSnapshots > 0 || this.#reclaimer.activeReaders > 0) return undefined;
    if (!this.#metaRoomShort(deletes)) return undefined;
    this.#pageStore.hurry();
    return this.#triggerCheckpoint().then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * Blocks of the next checkpoint's meta blob: the bitmap, the deferred entries (those pending, one per index page
   * the flush replaces, and the old meta blob, `moreEntries` more) and the named snapshots (`adding` more).
   */
  #metaBlocksNeeded(adding = 0, moreEntries = 0): number {
    const bs = this.#device.blockSize;
    // The flush frees (an entry each, deferred while a snapshot holds them) every page it relocates, at most one per
    // dirty page, and every page the tree dropped since the last flush (merges under deletes): uncounted, 64 batches of
    // deletes under a snapshot at 4 MiB freed 695 such pages, the blob outgrew its room after the flush, and every
    // checkpoint, deleteSnapshot() and close() failed ERR_VDE_FULL for good (review h8).
    const pages = Math.ceil(this.#index.dirtyBytes / bs) + this.#index.retiredPageCount;
    const entries = this.#reclaimer.pendingEntryCount + pages + 1 + moreEntries;
    // A version 2 blob also lists the runs of the blob it replaces (20 bytes each) and its own runs (12 bytes each; at
    // worst one per block, when free space is all 1-block holes): uncounted, a blob over 138 holes replacing one over
    // 141 outgrew its room by 8 blocks at a 4 MiB limit, and the checkpoint that deletes the snapshot failed.
    const bytes = 64 + BitmapAllocator.serializedByteLength(this.#allocator.blockCount) + 20 * (entries + this.#metaRuns.length);
    return Math.ceil((bytes + 300 * (this.#named.size + adding)) / (bs - 12)) + 1;
  }

  // ─── internals: reads (shared by the live engine and snapshots) ───────────────────────────────────────────

  async #lookup(tree: BTree, key: string): Promise<{ record: ObjectRecord; reader: number } | undefined> {
    // The paths that come here (a read with a signal, every snapshot read, a stream) may complete from memory: a
    // loop of them must let the event loop turn too, as the fast paths do (see turns.ts), or it starves timers, I/O
    // and the stores it may be waiting for.
    const turn = turnIfSpent();
    if (turn) await turn;
    this.#checkOpen();
    const keyBytes = encodeKey(key, this.#maxKeyBytes);
    if (this.#applyBarrier && tree === this.#index) await this.#applyBarrier;
    const reader = this.#beginRead(tree);
    try {
      const value = await tree.get(keyBytes);
      if (!value) {
        this.#endRead(reader, tree);
        return undefined;
      }
      const record = this.#io.recordOf(value, `object ${key}`);
      return { record: record instanceof Promise ? await record : record, reader };
    } catch (err) {
      this.#endRead(reader, tree);
      throw err;
    }
  }

  /**
   * The synchronous part of a read: the key's direct record when its whole index path is cached, `null` when the
   * key is absent, `undefined` when the caller must take the async path (pages to load, an indirect record, a batch
   * being applied, the engine closed). The record's views point into the cached page: use them before any await.
   */
  #cachedRecord(tree: BTree, key: string): ObjectRecord | null | undefined {
    const view = this.#cachedView(tree, key);
    if (view === undefined || view === null) return view;
    if (view[0] === KIND_INDIRECT) return undefined;
    return this.#io.recordOf(view, `object ${key}`) as ObjectRecord;
  }

  /** The key's index value as a view of the cached leaf (see #cachedRecord), null if absent, undefined if unknown. */
  #cachedView(tree: BTree, key: string): Uint8Array | null | undefined {
    if (this.#closed || this.#closing || (this.#applyBarrier && tree === this.#index)) return undefined;
    // The key bytes are a shared scratch array: getCachedView is synchronous and keeps nothing of the key.
    return tree.getCachedView(encodeKeyScratch(key, this.#maxKeyBytes));
  }

  /**
   * Registers a read of `tree`: the blocks it may see stay allocated until #endRead. A read of a snapshot's tree
   * also holds the snapshot's generation, so closing the snapshot while the read runs (a stream half consumed, a
   * list step in flight) frees none of its blocks until the read ends; a closed snapshot's tree starts no read.
   */
  #beginRead(tree: BTree): number {
    if (tree !== this.#index) {
      const scope = this.#snapshotScopes.get(tree);
      if (scope !== undefined) {
        if (!scope.open) throw new ClosedError('the snapshot is closed');
        this.#reclaimer.holdSnapshot(scope.generation);
      }
    }
    return this.#reclaimer.beginRead();
  }

  #endRead(reader: number, tree: BTree): void {
    this.#reclaimer.endRead(reader);
    if (tree !== this.#index) {
      const scope = this.#snapshotScopes.get(tree);
      if (scope !== undefined) this.#reclaimer.releaseSnapshot(scope.generation);
    }
    if (!this.#opts.readOnly && !this.#closed) this.#applyFrees(this.#reclaimer.takeEligible(this.#sb.generation));
  }

  async #read(tree: BTree, key: string, options: ReadOptions): Promise<Uint8Array> {
    checkReadOptions(options, 'retrieve');
    throwIfAborted(options.signal);
    const found = await this.#lookup(tree, key);
    if (!found) throw notFound(key);
    const reading = this.#io.read(found.record, `object ${key}`).finally(() => this.#endRead(found.reader, tree));
    // An abort while the blocks are read rejects at once; the read finishes in the background (its registration
    // keeps the blocks until then) and its bytes are dropped.
    const data = options.signal ? await abortable(reading, options.signal) : await reading;
    throwIfAborted(options.signal);
    return data;
  }

  #readStream(tree: BTree, key: string, options: ReadOptions): Readable {
    checkReadOptions(options, 'createReadStream');
    this.#checkOpen();
    encodeKey(key, this.#maxKeyBytes);
    const signal = options.signal;
    // No closure made here may refer to the stream: the registry in streamOf holds the read's token strongly, and
    // the token's `end` closure reaches this scope.
    const lookup = (): Promise<{ record: ObjectRecord; reader: number } | undefined> => this.#lookup(tree, key);
    const endRead = (r: number): void => this.#endRead(r, tree);
    const token: ReadToken = { end: undefined };
    return streamOf(readChunks(this.#io, key, signal, lookup, endRead, token), token, signal);
  }

  async #exists(tree: BTree, key: string): Promise<boolean> {
    const turn = turnIfSpent(); // see #lookup
    if (turn) await turn;
    this.#checkOpen();
    const keyBytes = encodeKey(key, this.#maxKeyBytes);
    if (this.#applyBarrier && tree === this.#index) await this.#applyBarrier;
    const reader = this.#beginRead(tree);
    try {
      return (await tree.get(keyBytes)) !== undefined;
    } finally {
      this.#endRead(reader, tree);
    }
  }

  async #stat(tree: BTree, key: string): Promise<ObjectInfo> {
    const found = await this.#lookup(tree, key);
    if (!found) throw new NotFoundError(`no object with key ${JSON.stringify(key)}`);
    this.#endRead(found.reader, tree);
    return infoOf(key, found.record);
  }

  #list(tree: BTree, options: ListOptions): AsyncIterable<ObjectInfo> {
    this.#checkOpen();
    const range = listRange(options);
    const reader: ListReader = {
      io: this.#io,
      tree,
      barrier: () => (tree === this.#index ? this.#applyBarrier : undefined),
      beginRead: () => {
        // An iterator taken before close() starts no read after it (it went on from the page cache, or failed with
        // the closed device's error when a page was not cached): ERR_VDE_CLOSED once its copied leaf is used up.
        this.#checkOpen();
        return this.#beginRead(tree);
      },
      endRead: (r) => this.#endRead(r, tree),
    };
    return { [Symbol.asyncIterator]: () => new InfoIterator(reader, range) };
  }
}

// ─── list ───────────────────────────────────────────────────────────────────────────────────────────────────

interface ListReader {
  io: ObjectIo;
  tree: BTree;
  barrier(): Promise<void> | undefined;
  beginRead(): number;
  endRead(reader: number): void;
}

const EMPTY_BUFFER = Buffer.alloc(0);

/**
 * The iterator behind `list()`. It takes one leaf's worth of entries at a time from the index (a copy of the leaf
 * and the entries' offsets in it, consistent as `BTree.entryBatches` describes) and hands them out without an await
 * or a view per entry. A reader registration covers each index read and each indirect record load, never the time
 * the caller holds the iterator, so an abandoned iterator holds no blocks.
 */
class InfoIterator implements AsyncIterator<ObjectInfo> {
  readonly #r: ListReader;
  readonly #range: KeyRange;
  #runs: AsyncIterator<EntryRun> | undefined;
  /** The current leaf copy (a Buffer view, for decodeKeyAt) and its entry offsets. */
  #bytes: Buffer = EMPTY_BUFFER;
  #offsets: number[] = [];
  #i = 0;
  #done = false;
  /**
   * The step in flight that changes the iterator's state after an await (the next leaf, an indirect record), or the
   * last call queued behind it. A `next()` called before the previous one settled (allowed by the protocol) waits
   * for it: run at once, it would replace the leaf the previous call is still reading and skip its entries.
   */
  #busy: Promise<unknown> | undefined;

  constructor(r: ListReader, range: KeyRange) {
    this.#r = r;
    this.#range = range;
  }

  next(): Promise<IteratorResult<ObjectInfo>> {
    const busy = this.#busy;
    if (busy === undefined) return this.#next();
    const queued = busy.then(
      () => this.#next(),
      () => this.#next(),
    );
    this.#setBusy(queued);
    return queued;
  }

  /** Marks `p` as the step in flight until it settles (unless a later call has queued behind it meanwhile). */
  #setBusy(p: Promise<unknown>): void {
    this.#busy = p;
    const clear = (): void => {
      if (this.#busy === p) this.#busy = undefined;
    };
    p.then(clear, clear);
  }

  /** A step that awaits: tracked as busy when called directly (a queued call is already tracked by its chain). */
  #async(p: Promise<IteratorResult<ObjectInfo>>): Promise<IteratorResult<ObjectInfo>> {
    if (this.#busy === undefined) this.#setBusy(p);
    return p;
  }

  #next(): Promise<IteratorResult<ObjectInfo>> {
    if (this.#i < this.#offsets.length) {
      const off = this.#offsets[this.#i++]!;
      try {
        const b = this.#bytes;
        // Entry layout (EntryRun): u16 key length, u16 value length, key, value.
        const kl = b[off]! | (b[off + 1]! << 8);
        const vl = b[off + 2]! | (b[off + 3]! << 8);
        const keyStart = off + 4;
        const key = decodeKeyAt(b, keyStart, keyStart + kl);
        const info = objectInfoAt(key, b, keyStart + kl, vl);
        if (info) return settledSoon({ value: info, done: false });
        const value = b.subarray(keyStart + kl, keyStart + kl + vl);
        if (value[0] !== KIND_INDIRECT) return settledSoon({ value: infoOf(key, this.#r.io.recordOf(value, `object ${key}`) as ObjectRecord), done: false });
        return this.#async(this.#indirect(key, value));
      } catch (err) {
        return this.#fail(err);
      }
    }
    return this.#async(this.#nextBatch());
  }

  return(): Promise<IteratorResult<ObjectInfo>> {
    this.#finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  async #indirect(key: string, value: Uint8Array): Promise<IteratorResult<ObjectInfo>> {
    let reader: number | undefined;
    try {
      reader = this.#r.beginRead(); // closed (the engine or the snapshot): the iterator ends with the error
      return { value: infoOf(key, await this.#r.io.loadRecord(value, `object ${key}`)), done: false };
    } catch (err) {
      this.#finish();
      throw err;
    } finally {
      if (reader !== undefined) this.#r.endRead(reader);
    }
  }

  async #nextBatch(): Promise<IteratorResult<ObjectInfo>> {
    // A leaf from the cache, or the end of the range, comes without I/O: a loop of lists must let the event loop turn.
    const turn = turnIfSpent();
    if (turn) await turn;
    for (;;) {
      if (this.#done) return { value: undefined, done: true };
      const pending = this.#r.barrier();
      if (pending) await pending;
      let reader: number;
      try {
        reader = this.#r.beginRead();
      } catch (err) {
        return this.#fail(err); // closed (the engine or the snapshot): the iterator ends with the error
      }
      let step: IteratorResult<EntryRun>;
      try {
        this.#runs ??= this.#r.tree.entryRuns(this.#range);
        step = await this.#runs.next();
      } catch (err) {
        return this.#fail(err);
      } finally {
        this.#r.endRead(reader);
      }
      // return() may have run while the leaf loaded: a finished iterator stays finished.
      if (step.done || this.#done) {
        this.#finish();
        return { value: undefined, done: true };
      }
      const run = step.value;
      this.#bytes = Buffer.from(run.bytes.buffer, run.bytes.byteOffset, run.bytes.byteLength);
      this.#offsets = run.offsets;
      this.#i = 0;
      if (this.#offsets.length > 0) return this.#next();
    }
  }

  #fail(err: unknown): Promise<never> {
    this.#finish();
    return rejected(err);
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#bytes = EMPTY_BUFFER;
    this.#offsets = [];
    this.#runs?.return?.()?.catch(() => undefined);
  }
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────────────────

/** A stream's read registration: `end` ends it, at most once (cleared when called); `detach` drops its abort listener. */
interface ReadToken {
  end: (() => void) | undefined;
  detach?: () => void;
}

/** The blocks of `runs` in all. */
function runBlocks(runs: readonly Extent[]): number {
  let n = 0;
  for (const r of runs) n += r.count;
  return n;
}

function endToken(token: ReadToken): void {
  const end = token.end;
  token.end = undefined;
  end?.();
}

/** What the registry does for a stream collected unfinished. */
function collected(token: ReadToken): void {
  endToken(token);
  token.detach?.();
}

/** Ends the read registration of a stream collected unfinished (its consumer dropped it without ending it). */
const streamReads = new FinalizationRegistry<ReadToken>(collected);

/**
 * The chunks of one object read: the read registration (taken by `lookup`) lasts until the generator finishes (end,
 * error, destroy, abort) or its stream is garbage-collected unfinished (`token`, see streamOf), so that an abandoned
 * stream does not keep every block freed after it from being reused.
 */
async function* readChunks(
  io: ObjectIo,
  key: string,
  signal: AbortSignal | undefined,
  lookup: () => Promise<{ record: ObjectRecord; reader: number } | undefined>,
  endRead: (reader: number) => void,
  token: ReadToken,
): AsyncGenerator<Uint8Array, void, undefined> {
  throwIfAborted(signal);
  // A stream of a cached object completes without waiting for I/O: lookup lets the event loop turn (see #lookup).
  const found = await lookup();
  if (!found) throw new NotFoundError(`no object with key ${JSON.stringify(key)}`);
  token.end = () => endRead(found.reader);
  try {
    throwIfAborted(signal);
    for await (const chunk of io.chunks(found.record, `object ${key}`)) {
      throwIfAborted(signal);
      yield chunk;
    }
  } finally {
    endToken(token);
  }
}

/**
 * The Readable of `chunks`. `token` is ended when the stream is collected unfinished: nothing the token reaches may
 * refer to the stream (the registry holds the token strongly), which is why the stream is made here, apart from the
 * closures that end the read.
 */
function streamOf(chunks: AsyncGenerator<Uint8Array, void, undefined>, token: ReadToken, signal: AbortSignal | undefined): Readable {
  const stream = Readable.from(chunks, { objectMode: false });
  streamReads.register(stream, token, token);
  stream.once('close', () => streamReads.unregister(token));
  if (signal) {
    // An abort ends the stream at once, also while its consumer has paused it (it would never pull again). The
    // listener reaches the stream weakly: a signal that outlives a dropped stream must not keep it alive.
    const ref = new WeakRef(stream);
    const detach = onAbort(signal, () => void ref.deref()?.destroy(new AbortedError(undefined, { cause: signal.reason })));
    stream.once('close', detach);
    token.detach = detach;
  }
  return stream;
}

/** A rejected promise for an error caught from our own code (always an Error). */

function rejected(err: unknown): Promise<never> {
  return rejectedSoon(err instanceof Error ? err : new Error(String(err)));
}

function notFound(key: string): NotFoundError {
  return new NotFoundError(`no object with key ${JSON.stringify(key)}`);
}

function infoOf(key: string, r: RecordFields): ObjectInfo {
  return {
    key,
    size: r.size,
    created: new Date(r.createdMs),
    modified: new Date(r.modifiedMs),
    etag: etagOf(r),
    metadata: r.metadata.byteLength === 0 ? {} : parseMetadata(r.metadata, `object ${key}`),
  };
}

/** The file path of a `file:` URL (`new URL('./data.vde', import.meta.url)`); any other URL is a bad argument. */
function pathOfUrl(url: URL): string {
  if (url.protocol !== 'file:') throw new InvalidArgumentError(`open() takes a file: URL, got ${JSON.stringify(url.href)}`);
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw new InvalidArgumentError(`open() cannot use ${JSON.stringify(url.href)}: ${(err as Error).message}`);
  }
}

function snapshotInfo(s: NamedSnapshotRecord): SnapshotInfo {
  return { name: s.name, created: new Date(s.createdMs), generation: s.generation, objectCount: s.objectCount };
}

function checkSnapshotName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || encodeUtf8(name).byteLength > 255) {
    throw new InvalidArgumentError('a snapshot name must be a non-empty string of at most 255 UTF-8 bytes');
  }
  // UTF-8 would store a lone surrogate as U+FFFD, and the name would not be found again after a reopen.
  if (!isWellFormed(name)) throw new InvalidArgumentError('a snapshot name must not hold a lone surrogate');
}

/** Carries an error thrown by a caller's callback through code that reports other errors as problems. */
class CallbackFailure extends Error {
  constructor(readonly callbackError: unknown) {
    super('a callback threw');
  }
}

function checkScrubOptions(options: unknown): asserts options is ScrubOptions {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('scrub options must be an object');
  rejectUnknown(options, SCRUB_OPTIONS, 'scrub option');
  const { onProgress, signal } = options as ScrubOptions;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw new InvalidArgumentError('onProgress must be a function');
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError('signal must be an AbortSignal');
}

/** Read options: an object (or undefined) whose `signal`, if any, is an AbortSignal. */
function checkReadOptions(options: unknown, method: string): asserts options is ReadOptions {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`${method} options must be an object`);
  rejectUnknown(options, READ_OPTIONS, `${method} option`);
  const signal = (options as ReadOptions).signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError('signal must be an AbortSignal');
}

/**
 * Throws `InvalidArgumentError` naming the first own property of `options` that is not in `known`: a misspelt
 * option (`metdata`) would otherwise be ignored silently (open() rejects unknown names the same way).
 */
function rejectUnknown(options: object, known: readonly string[], what: string): void {
  for (const name in options) {
    if (Object.hasOwn(options, name) && !known.includes(name)) {
      throw new InvalidArgumentError(`unknown ${what} ${JSON.stringify(name)} (known: ${known.join(', ')})`);
    }
  }
}

const STORE_OPTIONS = ['metadata', 'signal'] as const;
const LIST_OPTIONS = ['prefix', 'start', 'end', 'limit', 'reverse'] as const;
const SCRUB_OPTIONS = ['onProgress', 'signal'] as const;
const READ_OPTIONS = ['signal'] as const;
const NO_READ_OPTIONS: ReadOptions = Object.freeze({});
const PUT_FIELDS = ['type', 'key', 'data', 'metadata'] as const;
const DEL_FIELDS = ['type', 'key'] as const;

function checkStoreOptions(options: unknown): StoreOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('store options must be an object');
  rejectUnknown(options, STORE_OPTIONS, 'store option');
  const o = options as StoreOptions;
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new InvalidArgumentError('signal must be an AbortSignal');
  return o;
}

/** `p`, or a rejection with ERR_VDE_ABORTED as soon as `signal` aborts (`p` then goes on, its outcome dropped). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(new AbortedError(undefined, { cause: signal.reason }));
  }
  return new Promise<T>((resolve, reject) => {
    const detach = onAbort(signal, () => {
      p.catch(() => undefined);
      reject(new AbortedError(undefined, { cause: signal.reason }));
    });
    p.then(
      (v) => {
        detach();
        resolve(v);
      },
      (e: unknown) => {
        detach();
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** The lowest generation of `snapshots` (Infinity for none), without a spread whose length the format does not bound. */
function oldestGeneration(snapshots: readonly { generation: number }[]): number {
  let min = Infinity;
  for (const s of snapshots) if (s.generation < min) min = s.generation;
  return min;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(undefined, { cause: signal.reason });
}

function mapLockError(err: unknown): never {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ERR_LOCK_ABORTED' || code === 'ERR_LOCK_TIMEOUT') {
    throw new AbortedError('the operation was aborted while waiting for its lock', { cause: err });
  }
  if (code === 'ERR_LOCK_DISPOSED') throw new ClosedError('the engine is closed');
  throw err;
}

const utf8 = new TextEncoder();

function listRange(options: ListOptions): KeyRange {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('list options must be an object');
  rejectUnknown(options, LIST_OPTIONS, 'list option');
  const range: KeyRange = {};
  const str = (v: unknown, name: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new InvalidArgumentError(`list option ${name} must be a string`);
    // As for keys: UTF-8 would turn a lone surrogate into U+FFFD, and the range would select other keys.
    if (!isWellFormed(v)) throw new InvalidArgumentError(`list option ${name} holds a lone surrogate (not valid UTF-16)`);
    return v;
  };
  const prefix = str(options.prefix, 'prefix');
  const start = str(options.start, 'start');
  const end = str(options.end, 'end');
  if (prefix !== undefined && prefix.length > 0) range.prefix = utf8.encode(prefix);
  if (start !== undefined) range.gte = utf8.encode(start);
  if (end !== undefined) range.lt = utf8.encode(end);
  // Infinity means no limit, as in abstract-level and Array.prototype.slice habits.
  if (options.limit !== undefined && options.limit !== Infinity) {
    if (typeof options.limit !== 'number' || !Number.isInteger(options.limit) || options.limit < 0) {
      throw new InvalidArgumentError('list option limit must be a non-negative integer or Infinity');
    }
    range.limit = options.limit;
    if (options.limit === 0) range.limit = 0;
  }
  if (options.reverse !== undefined) {
    if (typeof options.reverse !== 'boolean') throw new InvalidArgumentError('list option reverse must be a boolean');
    range.reverse = options.reverse;
  }
  return range;
}

/**
 * A non-empty file that starts with a superblock (detectBlockSize found one) but holds less than one block was cut
 * short: the device has no blocks, and #openDevice would take it for a new container and format it over what is left.
 */
async function refuseCutShort(device: FileBlockDevice, path: string): Promise<void> {
  if (device.blockCount > 0) return;
  const size = device.fileSizeBytes;
  await device.close().catch(() => undefined);
  throw new CorruptionError('container', `${path} holds ${size} bytes, less than one ${device.blockSize}-byte block (truncated)`);
}

/** Finds the block size of an existing container file from whichever superblock copy is intact. */
async function detectBlockSize(path: string): Promise<number> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    throw toIoError(err, `opening ${path}`);
  }
  try {
    const head = new Uint8Array(128);
    await handle.read(head, 0, 128, 0);
    const fromA = peekBlockSize(head);
    if (fromA !== undefined) {
      // A checksummed superblock with a block size no container can have is damage, not the caller's option.
      if (!isValidBlockSize(fromA)) throw new CorruptionError('superblock', `records an impossible block size (${String(fromA)})`);
      return fromA;
    }
    for (let bs = 512; bs <= 65536; bs *= 2) {
      const { bytesRead } = await handle.read(head, 0, 128, bs);
      if (bytesRead === 128 && peekBlockSize(head) === bs) return bs;
    }
    await handle.read(head, 0, 128, 0);
    const creating = creationMarkerBlockSize(head);
    if (creating !== undefined && isValidBlockSize(creating)) return creating; // #openDevice decides (#creationInterrupted)
    if (hasMagic(head)) throw new CorruptionError('superblock', 'both superblock copies are damaged');
    throw new FormatError(`${path} is not a VDE container`);
  } finally {
    await handle.close();
  }
}

/** Every block the engine can account for, each counted once (for `check()`). */
class BlockCensus {
  readonly #owner: (string | undefined)[];
  counted = 0;
  constructor(readonly blockCount: number) {
    this.#owner = new Array<string | undefined>(blockCount);
  }
  add(e: Extent, owner: string): void {
    for (let b = e.start; b < e.start + e.count; b++) {
      if (b >= this.blockCount) throw new CorruptionError('check', `${owner} uses block ${b}, past the end of the container`);
      const other = this.#owner[b];
      if (other !== undefined) throw new CorruptionError('check', `block ${b} belongs to both ${other} and ${owner}`);
      this.#owner[b] = owner;
      this.counted++;
    }
  }
  compare(allocator: BitmapAllocator): void {
    for (let b = 0; b < this.blockCount; b++) {
      const used = allocator.isAllocated(b);
      const owner = this.#owner[b];
      if (owner !== undefined && !used) throw new CorruptionError('check', `block ${b} of ${owner} is marked free`);
      if (owner === undefined && used) throw new CorruptionError('check', `block ${b} is marked used but nothing owns it (leak)`);
    }
  }
}
