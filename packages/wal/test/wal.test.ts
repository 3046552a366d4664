import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  CorruptionError,
  FormatError,
  FullError,
  InvalidArgumentError,
  IoError,
  MemoryBlockDevice,
  OutOfRangeError,
  PoisonedError,
  TooLargeError,
} from '@vde/block-device';
import { FaultyBlockDevice } from '@vde/test-harness';
import { WriteAheadLog } from '@vde/wal';
import { HEADER_BLOCKS, RECORD_HEADER_SIZE, decodeHeader, encodeHeader, encodeRecordHeader, recordCrc, setRecordCrc } from '../src/format.js';
import { collect, DurableRecordingDevice, InlineDevice, payloadOf, RecordingDevice, settle } from './helpers.js';

const BS = 512;
const REGION = { startBlock: 3, blockCount: 64 };

function memDevice(blocks = 80): MemoryBlockDevice {
  return new MemoryBlockDevice({ blockSize: BS, blockCount: blocks });
}

/** Area byte `p` of REGION as a device byte offset. */
function areaByte(p: number, region = REGION): number {
  return (region.startBlock + HEADER_BLOCKS) * BS + p;
}

describe('create, append, reopen', () => {
  it('starts at LSN 1, replays the same bytes, and continues LSNs after a clean close', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    expect(wal.tailInfo).toEqual({ lastLsn: 0, stoppedAt: 'empty', knownDurableLsn: 0 });
    const sizes = [0, 1, 100, 511, 512, 513, 3000, 0];
    const lsns: number[] = [];
    for (const [i, n] of sizes.entries()) lsns.push(await wal.append(i, payloadOf(n, i)));
    expect(lsns).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(wal.durableLsn).toBe(8);
    const live = await collect(wal.replay());
    expect(live.map((r) => r.payload.byteLength)).toEqual(sizes);
    await wal.close();

    const again = await WriteAheadLog.open(dev, REGION);
    // Each record carries the LSN that was durable when it was written: record 8 proves 1..7 were durable.
    expect(again.tailInfo).toEqual({ lastLsn: 8, stoppedAt: 'end', knownDurableLsn: 7 });
    expect(again.lastLsn).toBe(8);
    const records = await collect(again.replay());
    expect(records.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const [i, r] of records.entries()) {
      expect(r.type).toBe(i);
      expect(r.payload).toEqual(payloadOf(sizes[i]!, i));
    }
    expect((await collect(again.replay(6))).map((r) => r.lsn)).toEqual([7, 8]);
    expect(await again.append(9, payloadOf(10, 9))).toBe(9);
    await again.close();
    const third = await WriteAheadLog.open(dev, REGION);
    expect((await collect(third.replay(8))).map((r) => [r.lsn, r.type])).toEqual([[9, 9]]);
  });

  it('a new log over an old one never replays the old records (new epoch)', async () => {
    const dev = memDevice();
    const old = await WriteAheadLog.create(dev, REGION);
    for (let i = 0; i < 10; i++) await old.append(1, payloadOf(50, i));
    await old.close();
    const fresh = await WriteAheadLog.create(dev, REGION);
    await fresh.close();
    const reopened = await WriteAheadLog.open(dev, REGION);
    expect(reopened.tailInfo).toEqual({ lastLsn: 0, stoppedAt: 'empty', knownDurableLsn: 0 });
    expect(await collect(reopened.replay())).toEqual([]);
    expect(await reopened.append(2, payloadOf(5, 1))).toBe(1);
  });

  it('rejects bad arguments with typed errors', async () => {
    const dev = memDevice();
    await expect(WriteAheadLog.create(dev, { startBlock: 0, blockCount: 3 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(WriteAheadLog.create(dev, { startBlock: 70, blockCount: 20 })).rejects.toBeInstanceOf(OutOfRangeError);
    const wal = await WriteAheadLog.create(dev, REGION);
    for (const t of [-1, 256, 1.5, Number.NaN]) {
      await expect(wal.append(t, new Uint8Array(1))).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(wal.append(0, 'text' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidArgumentError);
    const largest = wal.capacityBytes - wal.recordBytes(0);
    await expect(wal.append(0, new Uint8Array(largest + 1))).rejects.toBeInstanceOf(TooLargeError);
    expect(await wal.append(0, new Uint8Array(largest))).toBe(1); // the largest payload fits (in an empty log)
    await expect(wal.truncate(5)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(collect(wal.replay(-1))).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('a refused append takes no LSN: later acknowledged records are all there after reopen', async () => {
    // Every check runs before the LSN is taken. A taken LSN with no record would be a hole that recovery reads as
    // the end of the log (the records after it lost) or as damage in the middle (the log unopenable).
    await expect(WriteAheadLog.create(null as never, REGION)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(WriteAheadLog.open(null as never, REGION)).rejects.toBeInstanceOf(InvalidArgumentError);
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    expect(await wal.append(1, payloadOf(10, 1))).toBe(1);
    const detached = new Uint8Array(100);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    const refused: [Uint8Array, unknown][] = [
      [payloadOf(5, 2), null],
      [payloadOf(5, 2), 7],
      [payloadOf(5, 2), { durable: 'yes' }],
      [payloadOf(5, 2), { inline: 1 }],
      [detached, undefined],
    ];
    for (const [payload, options] of refused) {
      await expect(wal.append(1, payload, options as never)).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(wal.lastLsn).toBe(1);
    }
    expect(await wal.append(1, payloadOf(10, 2))).toBe(2);
    expect(await wal.append(1, payloadOf(10, 3))).toBe(3);
    await wal.close();
    const again = await WriteAheadLog.open(dev, REGION);
    expect((await collect(again.replay())).map((r) => r.lsn)).toEqual([1, 2, 3]);
    await again.close();
  });

  it('append(payload, { durable }) is the short form of append(0, payload, { durable })', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    expect(await wal.append(payloadOf(10, 1))).toBe(1);
    expect(await wal.append(payloadOf(20, 2), { durable: false })).toBe(2);
    expect(wal.durableLsn).toBe(1);
    expect(await wal.append(7, payloadOf(30, 3), { durable: true })).toBe(3);
    await expect(wal.append(payloadOf(5, 4), { durable: 'yes' } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(wal.append(payloadOf(5, 4), null as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(wal.lastLsn).toBe(3);
    await wal.close();
    const again = await WriteAheadLog.open(dev, REGION);
    const records = await collect(again.replay());
    expect(records.map((r) => [r.lsn, r.type, r.payload])).toEqual([
      [1, 0, payloadOf(10, 1)],
      [2, 0, payloadOf(20, 2)],
      [3, 7, payloadOf(30, 3)],
    ]);
    await again.close();
  });

  it('open without a header is a FormatError, and so is a different region size', async () => {
    const dev = memDevice();
    await expect(WriteAheadLog.open(dev, REGION)).rejects.toBeInstanceOf(FormatError);
    await (await WriteAheadLog.create(dev, REGION)).close();
    await expect(WriteAheadLog.open(dev, { ...REGION, blockCount: 60 })).rejects.toBeInstanceOf(FormatError);
  });

  it('after close every call rejects with ClosedError; close waits for appends in flight', async () => {
    const wal = await WriteAheadLog.create(memDevice(), REGION);
    const pending = [wal.append(1, payloadOf(10, 1)), wal.append(1, payloadOf(10, 2), { durable: false })];
    await wal.close();
    expect(await Promise.all(pending)).toEqual([1, 2]);
    expect(wal.durableLsn).toBe(2); // close synced the relaxed record too
    await expect(wal.append(1, new Uint8Array(1))).rejects.toBeInstanceOf(ClosedError);
    await expect(wal.sync()).rejects.toBeInstanceOf(ClosedError);
    await expect(wal.truncate(1)).rejects.toBeInstanceOf(ClosedError);
    await expect(collect(wal.replay())).rejects.toBeInstanceOf(ClosedError);
    await wal.close(); // idempotent
  });
});

describe('group commit', () => {
  it('a lone writer pays one write and one sync per append', async () => {
    const dev = new FaultyBlockDevice(memDevice());
    const wal = await WriteAheadLog.create(dev, REGION);
    const before = dev.counters;
    for (let i = 0; i < 5; i++) await wal.append(1, payloadOf(100, i));
    const after = dev.counters;
    expect(after.writes - before.writes).toBe(5);
    expect(after.syncs - before.syncs).toBe(5);
    expect(wal.stats()).toMatchObject({ records: 5, batches: 5, maxBatch: 1 });
  });

  it('appends made while a batch is in flight go out as ONE write then ONE sync, write awaited first', async () => {
    const dev = new RecordingDevice(memDevice());
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.events.length = 0;
    dev.holdSyncs = true;
    const first = wal.append(1, payloadOf(100, 0));
    await settle();
    expect(dev.heldSyncs).toBe(1); // batch 1 is in flight, its sync held
    const rest = Array.from({ length: 20 }, (_, i) => wal.append(1, payloadOf(300, i + 1)));
    await settle();
    expect(dev.events.filter((e) => e.kind === 'write-start')).toHaveLength(1); // nothing else went out yet
    dev.holdSyncs = false;
    dev.release();
    expect(await first).toBe(1);
    expect(await Promise.all(rest)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(dev.events.map((e) => e.kind)).toEqual([
      'write-start', 'write-end', 'sync-start', 'sync-end',
      'write-start', 'write-end', 'sync-start', 'sync-end',
    ]);
    expect(wal.stats()).toMatchObject({ records: 21, batches: 2, maxBatch: 20 });
    // The second batch starts at the block after the first one (never rewrites it) and is contiguous.
    const writes = dev.events.filter((e) => e.kind === 'write-start');
    expect(writes[1]!.blockNo).toBe(writes[0]!.blockNo! + writes[0]!.blocks!);
    expect(writes[1]!.blocks).toBe(Math.ceil((20 * (RECORD_HEADER_SIZE + 300)) / BS));
  });

  it('64 concurrent appenders share batches; LSNs are distinct and ordered', async () => {
    const dev = new FaultyBlockDevice(memDevice(2100));
    const region = { startBlock: 0, blockCount: 2048 };
    const wal = await WriteAheadLog.create(dev, region);
    const perWriter = 20;
    const got: number[][] = [];
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        const mine: number[] = [];
        for (let i = 0; i < perWriter; i++) mine.push(await wal.append(w % 256, payloadOf(64, w * 1000 + i)));
        got.push(mine);
      }),
    );
    const all = got.flat().sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 64 * perWriter }, (_, i) => i + 1));
    for (const mine of got) for (let i = 1; i < mine.length; i++) expect(mine[i]!).toBeGreaterThan(mine[i - 1]!);
    const s = wal.stats();
    expect(s.records).toBe(64 * perWriter);
    expect(s.batches).toBeLessThan(s.records / 16);
    expect(s.maxBatch).toBe(64);
    expect(s.meanBatch).toBeCloseTo(s.records / s.batches);
    await wal.close();
    const replayed = await collect((await WriteAheadLog.open(dev, region)).replay());
    expect(replayed).toHaveLength(64 * perWriter);
  });

  it('relaxed appends resolve once written; sync() makes them durable', async () => {
    const dev = new FaultyBlockDevice(memDevice());
    const wal = await WriteAheadLog.create(dev, REGION);
    await wal.append(1, payloadOf(10, 1));
    const syncsBefore = dev.counters.syncs;
    expect(await wal.append(1, payloadOf(10, 2), { durable: false })).toBe(2);
    expect(await wal.append(1, payloadOf(10, 3), { durable: false })).toBe(3);
    expect(dev.counters.syncs).toBe(syncsBefore); // no sync was paid for them
    expect(wal.durableLsn).toBe(1);
    expect(wal.lastLsn).toBe(3);
    await wal.sync();
    expect(wal.durableLsn).toBe(3);
    expect(dev.counters.syncs).toBe(syncsBefore + 1);
    await wal.sync(); // nothing new: no extra sync
    expect(dev.counters.syncs).toBe(syncsBefore + 1);
    const crashed = dev.powerCut({ seed: 1, mode: 'drop-all' });
    const reopened = await WriteAheadLog.open(crashed, REGION);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([1, 2, 3]);
  });

  it('relaxed records not yet synced may be lost by a crash, durable ones never', async () => {
    const dev = new FaultyBlockDevice(memDevice());
    const wal = await WriteAheadLog.create(dev, REGION);
    await wal.append(1, payloadOf(10, 1));
    await wal.append(1, payloadOf(10, 2), { durable: false });
    const reopened = await WriteAheadLog.open(dev.powerCut({ seed: 1, mode: 'drop-all' }), REGION);
    expect(reopened.tailInfo.lastLsn).toBe(1);
    expect(await reopened.append(1, payloadOf(10, 3))).toBe(2);
  });
});

describe('writeDurable', () => {
  it('a batch that needs a sync goes out as ONE writeDurable when the device offers it', async () => {
    const faulty = new FaultyBlockDevice(memDevice());
    const dev = new DurableRecordingDevice(faulty);
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.events.length = 0;
    const syncsBefore = wal.stats().syncs;
    for (let i = 0; i < 5; i++) expect(await wal.append(1, payloadOf(100, i))).toBe(i + 1);
    expect(dev.events.map((e) => e.kind)).toEqual(Array.from({ length: 5 }, () => ['durable-start', 'durable-end']).flat());
    expect(wal.stats()).toMatchObject({ records: 5, batches: 5, syncs: syncsBefore + 5 });
    expect(wal.durableLsn).toBe(5);

    // Relaxed appends need no sync: a plain write. A later sync() with nothing to write is a plain sync.
    dev.events.length = 0;
    expect(await wal.append(1, payloadOf(10, 6), { durable: false })).toBe(6);
    await wal.sync();
    expect(dev.events.map((e) => e.kind)).toEqual(['write-start', 'write-end', 'sync-start', 'sync-end']);

    // A batch mixing relaxed and durable appends needs a sync: one writeDurable, which goes out beside the durable
    // batch in flight; every record resolves after it.
    dev.events.length = 0;
    dev.holdSyncs = true;
    const first = wal.append(1, payloadOf(10, 7));
    await settle();
    const mixed = [wal.append(1, payloadOf(10, 8), { durable: false }), wal.append(1, payloadOf(10, 9))];
    await settle();
    expect(dev.heldSyncs).toBe(2);
    dev.holdSyncs = false;
    dev.release();
    expect(await Promise.all([first, ...mixed])).toEqual([7, 8, 9]);
    expect(dev.events.map((e) => e.kind)).toEqual(['durable-start', 'durable-start', 'durable-end', 'durable-end']);
    expect(wal.durableLsn).toBe(9);

    // The durable image (a power cut that drops every unsynced write) holds all of them.
    const reopened = await WriteAheadLog.open(faulty.powerCut({ seed: 1, mode: 'drop-all' }), REGION);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('a batch that wraps around the area end is two writes then one sync; truncate writes its header durably', async () => {
    const faulty = new FaultyBlockDevice(memDevice());
    const dev = new DurableRecordingDevice(faulty);
    const region = { startBlock: 0, blockCount: 6 }; // 4-block area
    const wal = await WriteAheadLog.create(dev, region);
    await wal.append(1, payloadOf(1500, 0)); // area blocks 0..2
    dev.events.length = 0;
    await wal.truncate(1); // head moves to area block 3
    // The header, durable; then its copy in the other slot, written plainly (a later sync makes it durable).
    expect(dev.events.map((e) => e.kind)).toEqual(['durable-start', 'durable-end', 'write-start', 'write-end']);
    expect(dev.events[0]!.blockNo).toBeLessThan(HEADER_BLOCKS); // a header slot
    expect(dev.events[2]!.blockNo).toBe(HEADER_BLOCKS - 1 - dev.events[0]!.blockNo!); // the other slot
    dev.events.length = 0;
    expect(await wal.append(1, payloadOf(1000, 1))).toBe(2); // 2 blocks from area block 3: wraps to block 0
    expect(dev.events.filter((e) => e.kind.endsWith('-start')).map((e) => [e.kind, e.blockNo])).toEqual([
      ['write-start', HEADER_BLOCKS + 3],
      ['write-start', HEADER_BLOCKS],
      ['sync-start', undefined],
    ]);
    const reopened = await WriteAheadLog.open(faulty.powerCut({ seed: 2, mode: 'drop-all' }), region);
    const records = await collect(reopened.replay());
    expect(records.map((r) => r.lsn)).toEqual([2]);
    expect(records[0]!.payload).toEqual(payloadOf(1000, 1));
  });

  it('without writeDurable the log falls back to write + sync', async () => {
    const dev = new RecordingDevice(memDevice());
    expect('writeDurable' in dev).toBe(false);
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.events.length = 0;
    await wal.append(1, payloadOf(100, 1));
    await wal.truncate(1);
    expect(dev.events.map((e) => e.kind)).toEqual([
      'write-start', 'write-end', 'sync-start', 'sync-end', // the batch
      'write-start', 'write-end', 'sync-start', 'sync-end', // the header
      'write-start', 'write-end', // its copy in the other slot
    ]);
  });

  for (const [fault, op, ErrorClass] of [
    ['EIO', 'sync', IoError],
    ['ENOSPC', 'write', FullError],
  ] as const) {
    it(`${fault} in writeDurable (its ${op}) rejects every waiter of the batch with ${ErrorClass.name}, then poisons the log`, async () => {
      const faulty = new FaultyBlockDevice(memDevice());
      const dev = new DurableRecordingDevice(faulty);
      const wal = await WriteAheadLog.create(dev, REGION);
      await wal.append(1, payloadOf(10, 0));
      dev.holdSyncs = true;
      const first = wal.append(1, payloadOf(10, 1)); // batch A, held before it starts
      await settle();
      const batch = [
        ...Array.from({ length: 6 }, (_, i) => wal.append(1, payloadOf(10, i + 2))),
        wal.append(1, payloadOf(10, 9), { durable: false }),
      ];
      const settled = Promise.allSettled([...batch, wal.sync()]);
      await settle();
      expect(dev.heldSyncs).toBe(2); // batch B (the 6 + 1 appends above) went out beside A, held before it starts
      const late = wal.append(1, payloadOf(10, 10)).catch((e: unknown) => e); // queued: two batches are in flight
      await settle();
      expect(dev.heldSyncs).toBe(2);
      faulty.failAfter(1, fault, { op }); // the next write (or sync) fails: batch B's
      dev.releaseLast(); // B goes first and fails; it reports only after A, which is still held
      await settle();
      expect(wal.durableLsn).toBe(1);
      dev.holdSyncs = false;
      dev.release(); // A goes and succeeds
      expect(await first).toBe(2);
      const results = await settled;
      expect(results).toHaveLength(8);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const reason = (r as PromiseRejectedResult).reason as Error;
        expect(reason).toBeInstanceOf(ErrorClass);
        expect((reason.cause as { code?: string }).code).toBe(fault);
        expect(reason.message).toMatch(/durable batch write failed/);
      }
      expect(await late).toBeInstanceOf(PoisonedError);
      faulty.clearFaults();
      await expect(wal.append(1, payloadOf(1, 1))).rejects.toBeInstanceOf(PoisonedError);
      await expect(wal.sync()).rejects.toBeInstanceOf(PoisonedError);
      await expect(wal.truncate(1)).rejects.toBeInstanceOf(PoisonedError);
      expect(wal.durableLsn).toBe(2);
      await wal.close();
      const reopened = await WriteAheadLog.open(faulty.powerCut({ seed: 4, mode: 'drop-all' }), REGION);
      // A failed write left nothing of B. After a failed sync, B's bytes had been written, and A's sync (released
      // later) made them durable. Either way B's waiters were told it failed, and recovery finds a prefix of the log
      // that holds every acknowledged record. The late append never went out: no batch starts beside a failed one
      // (LSN 10 would be on disk otherwise).
      expect(reopened.tailInfo.lastLsn).toBe(fault === 'ENOSPC' ? 2 : 9);
    });
  }
});

describe('inline appends (writeDurableSync)', () => {
  async function inlineLog(): Promise<{ dev: InlineDevice; mem: MemoryBlockDevice; wal: WriteAheadLog }> {
    const mem = memDevice();
    const dev = new InlineDevice(mem);
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.events.length = 0;
    return { dev, mem, wal };
  }
  const kinds = (dev: InlineDevice): string[] => dev.events.map((e) => e.kind);

  it('a lone inline append is ONE writeDurableSync on the calling thread, acknowledged durable, replayed after reopen', async () => {
    const { dev, mem, wal } = await inlineLog();
    for (let i = 0; i < 5; i++) expect(await wal.append(1, payloadOf(100, i), { inline: true })).toBe(i + 1);
    expect(kinds(dev)).toEqual(['inline', 'inline', 'inline', 'inline', 'inline']);
    expect(wal.stats()).toMatchObject({ records: 5, batches: 5, inlineBatches: 5 });
    expect(wal.durableLsn).toBe(5);
    // The next (non-inline) batch continues the chain the inline ones left.
    expect(await wal.append(1, payloadOf(7, 9))).toBe(6);
    expect(kinds(dev).slice(5)).toEqual(['durable-start', 'durable-end']);
    const reopened = await WriteAheadLog.open(mem, REGION);
    const replayed = await collect(reopened.replay());
    expect(replayed.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(replayed[3]!.payload).toEqual(payloadOf(100, 3));
  });

  it('lets the event loop turn before each inline write: a writer awaiting one append after another does not starve timers', async () => {
    const { dev, wal } = await inlineLog();
    let turns = 0;
    let done = false;
    const tick = (): void => {
      turns++;
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    for (let i = 0; i < 50; i++) await wal.append(1, payloadOf(10, i), { inline: true });
    done = true;
    expect(wal.stats().inlineBatches).toBe(50);
    expect(dev.events.every((e) => e.kind === 'inline')).toBe(true);
    // Each inline write waited for a check phase, where the other callback ran too (in microtasks alone: 0 turns).
    expect(turns).toBeGreaterThanOrEqual(49);
  });

  it('is used only by a durable record alone in its batch with nothing in flight and the inline flag set', async () => {
    const { dev, wal } = await inlineLog();
    // Five in one turn: one batch of five, through writeDurable.
    expect(await Promise.all(Array.from({ length: 5 }, (_, i) => wal.append(1, payloadOf(10, i), { inline: true })))).toEqual([1, 2, 3, 4, 5]);
    // Without the flag, or relaxed.
    await wal.append(1, payloadOf(10, 6));
    await wal.append(1, payloadOf(10, 7), { inline: true, durable: false });
    await wal.sync();
    expect(kinds(dev)).not.toContain('inline');
    // With a batch in flight, a lone inline append waits for it (acknowledgements stay in order), then goes inline.
    dev.events.length = 0;
    dev.holdSyncs = true;
    const first = wal.append(1, payloadOf(10, 8));
    await settle();
    const second = wal.append(1, payloadOf(10, 9), { inline: true });
    await settle();
    expect(kinds(dev)).toEqual(['durable-start', 'durable-start']); // the second went out beside the first
    dev.holdSyncs = false;
    dev.release();
    expect(await Promise.all([first, second])).toEqual([8, 9]);
    expect(wal.stats().inlineBatches).toBe(0);
    expect(await wal.append(1, payloadOf(10, 10), { inline: true })).toBe(10);
    expect(wal.stats().inlineBatches).toBe(1);
  });

  it('a device that declines gets the same batch through writeDurable', async () => {
    const { dev, mem, wal } = await inlineLog();
    dev.inlineMode = 'decline';
    expect(await wal.append(1, payloadOf(50, 1), { inline: true })).toBe(1);
    expect(kinds(dev)).toEqual(['inline', 'durable-start', 'durable-end']);
    expect(dev.events[0]!.blockNo).toBe(dev.events[1]!.blockNo);
    expect(wal.stats().inlineBatches).toBe(0);
    expect((await collect((await WriteAheadLog.open(mem, REGION)).replay())).map((r) => r.lsn)).toEqual([1]);
  });

  it('only a literal true counts as written: a device returning a promise by mistake gets the batch through writeDurable', async () => {
    const { dev, wal } = await inlineLog();
    let late!: () => void;
    Object.assign(dev, { writeDurableSync: () => new Promise<void>((r) => (late = r)) as unknown as boolean });
    expect(await wal.append(1, payloadOf(20, 1), { inline: true })).toBe(1);
    expect(wal.stats().inlineBatches).toBe(0);
    expect(dev.events.map((e) => e.kind)).toEqual(['durable-start', 'durable-end']);
    late();
  });

  it('a failed inline write rejects the append with IoError and poisons the log; queued appends get PoisonedError', async () => {
    const { dev, wal } = await inlineLog();
    await wal.append(1, payloadOf(10, 0), { inline: true });
    dev.inlineMode = 'fail';
    const failed = wal.append(1, payloadOf(10, 1), { inline: true }).catch((e: unknown) => e);
    const err = (await failed) as Error;
    expect(err).toBeInstanceOf(IoError);
    expect(err.message).toMatch(/durable batch write failed/);
    expect((err.cause as { code?: string }).code).toBe('EIO');
    dev.inlineMode = 'ok';
    await expect(wal.append(1, payloadOf(1, 1), { inline: true })).rejects.toBeInstanceOf(PoisonedError);
    await expect(wal.sync()).rejects.toBeInstanceOf(PoisonedError);
    expect(wal.durableLsn).toBe(1);
  });

  it('a slow disk (durable writes over 2 ms) sends lone appends to the thread pool until its writes are fast again', async () => {
    const { dev, wal } = await inlineLog();
    dev.inlineMs = 8;
    let lsn = 0;
    for (let i = 0; i < 12; i++) lsn = await wal.append(1, payloadOf(10, i), { inline: true });
    const slowInline = wal.stats().inlineBatches;
    // The first went inline (nothing measured yet) and took 8 ms: the average crossed 2 ms and stayed above it, as
    // the pool's writes take 8 ms too. The event loop was held once.
    expect(slowInline).toBe(1);
    dev.inlineMs = 0;
    // The pool's writes of this memory device are fast: the average falls and inline appends come back.
    for (let i = 0; i < 50 && wal.stats().inlineBatches === slowInline; i++) lsn = await wal.append(1, payloadOf(10, i), { inline: true });
    expect(wal.stats().inlineBatches).toBeGreaterThan(slowInline);
    expect(wal.durableLsn).toBe(lsn);
  });
});

describe('two durable batches in flight', () => {
  it('a second durable batch goes out while the first is in flight; acknowledgements stay in LSN order', async () => {
    const faulty = new FaultyBlockDevice(memDevice());
    const dev = new DurableRecordingDevice(faulty);
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.events.length = 0;
    dev.holdSyncs = true;
    const order: number[] = [];
    const track = (p: Promise<number>): Promise<number> => p.then((lsn) => (order.push(lsn), lsn));
    const a = track(wal.append(1, payloadOf(100, 1)));
    await settle();
    const b = [track(wal.append(1, payloadOf(100, 2))), track(wal.append(1, payloadOf(100, 3)))];
    await settle();
    expect(dev.heldSyncs).toBe(2); // A and B are both in flight
    const c = track(wal.append(1, payloadOf(100, 4)));
    await settle();
    expect(dev.heldSyncs).toBe(2); // never a third one: C waits
    const starts = dev.events.filter((e) => e.kind === 'durable-start');
    expect(starts).toHaveLength(2);
    expect(starts[1]!.blockNo).toBe(starts[0]!.blockNo! + starts[0]!.blocks!); // B right after A, no shared block
    dev.releaseLast(); // B finishes first ...
    await settle();
    expect(order).toEqual([]); // ... but is not acknowledged before A
    expect(wal.durableLsn).toBe(0);
    expect(dev.heldSyncs).toBe(1);
    dev.holdSyncs = false;
    dev.release();
    expect(await Promise.all([a, ...b, c])).toEqual([1, 2, 3, 4]);
    expect(order).toEqual([1, 2, 3, 4]);
    expect(wal.durableLsn).toBe(4);
    expect(wal.stats()).toMatchObject({ records: 4, batches: 3 });
    await wal.close();
  });

  it('a power cut with the later batch durable and the earlier one not loses both, and the later never returns', async () => {
    const faulty = new FaultyBlockDevice(memDevice());
    const dev = new DurableRecordingDevice(faulty);
    const wal = await WriteAheadLog.create(dev, REGION);
    expect(await wal.append(1, payloadOf(200, 1))).toBe(1);
    dev.holdSyncs = true;
    void wal.append(1, payloadOf(200, 2)).catch(() => undefined); // batch A (LSN 2), held: never written
    await settle();
    const b = Promise.all([wal.append(1, payloadOf(200, 3)), wal.append(1, payloadOf(200, 4))]); // batch B
    await settle();
    expect(dev.heldSyncs).toBe(2);
    dev.releaseLast(); // B is written and synced; A is not
    await settle();
    let bSettled = false;
    void b.then(
      () => (bSettled = true),
      () => (bSettled = true),
    );
    await settle();
    expect(bSettled).toBe(false); // B waits for A: not acknowledged
    const cut = faulty.powerCut({ seed: 7, mode: 'drop-all' });
    const reopened = await WriteAheadLog.open(cut, REGION); // no CorruptionError: B never claimed A durable
    expect(reopened.tailInfo.lastLsn).toBe(1);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([1]);
    // The log continues at LSN 2 over A's blocks; B's stale records after them (same epoch, the LSNs that come
    // next) must not be taken for its tail: their chain link names A's record, not the new one.
    expect(await reopened.append(1, payloadOf(200, 99))).toBe(2);
    await reopened.close();
    const again = await WriteAheadLog.open(cut, REGION);
    const replayed = await collect(again.replay());
    expect(replayed.map((r) => r.lsn)).toEqual([1, 2]);
    expect(replayed[1]!.payload).toEqual(payloadOf(200, 99));
  });
});

describe('failures', () => {
  it('EIO on sync rejects every waiter of the batch with IoError, then everything with PoisonedError', async () => {
    const dev = new FaultyBlockDevice(memDevice());
    const wal = await WriteAheadLog.create(dev, REGION);
    await wal.append(1, payloadOf(10, 0));
    dev.failAfter(1, 'EIO', { op: 'sync' });
    const batch = Array.from({ length: 10 }, (_, i) => wal.append(1, payloadOf(10, i)));
    const syncer = wal.sync();
    const results = await Promise.allSettled([...batch, syncer]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const reason = (r as PromiseRejectedResult).reason as IoError;
      expect(reason).toBeInstanceOf(IoError);
      expect(reason.errno).toBe('EIO');
    }
    dev.clearFaults();
    await expect(wal.append(1, payloadOf(1, 1))).rejects.toBeInstanceOf(PoisonedError);
    await expect(wal.sync()).rejects.toBeInstanceOf(PoisonedError);
    await expect(wal.truncate(1)).rejects.toBeInstanceOf(PoisonedError);
    expect(dev.counters.syncs).toBe(2); // create + first append: the failed sync was never retried
    await wal.close();
  });

  it('ENOSPC on the batch write rejects with FullError; appends queued behind it get PoisonedError', async () => {
    const dev = new RecordingDevice(new FaultyBlockDevice(memDevice()));
    const faulty = dev.inner as FaultyBlockDevice;
    const wal = await WriteAheadLog.create(dev, REGION);
    dev.holdSyncs = true;
    const first = wal.append(1, payloadOf(10, 0));
    await settle();
    faulty.failAfter(1, 'ENOSPC', { op: 'write' });
    const second = wal.append(1, payloadOf(10, 1)); // goes out in batch 2, whose write fails
    const third = wal.append(1, payloadOf(10, 2), { durable: false }); // batch 2 too
    dev.holdSyncs = false;
    dev.release();
    expect(await first).toBe(1);
    await expect(second).rejects.toBeInstanceOf(FullError);
    await expect(third).rejects.toBeInstanceOf(FullError);
    await expect(wal.append(1, payloadOf(10, 3))).rejects.toBeInstanceOf(PoisonedError);
  });

  it('appends waiting for space when the log is poisoned reject instead of hanging', async () => {
    const dev = new FaultyBlockDevice(memDevice());
    const region = { startBlock: 0, blockCount: 6 }; // 4-block area
    const wal = await WriteAheadLog.create(dev, region);
    await wal.append(1, payloadOf(1500, 0)); // 3 blocks
    const waiting = wal.append(1, payloadOf(1000, 1)); // needs 3 blocks: waits
    dev.failAfter(1, 'EIO', { op: 'sync' });
    await expect(wal.truncate(1)).rejects.toBeInstanceOf(IoError); // the header sync fails: poisoned
    await expect(waiting).rejects.toBeInstanceOf(PoisonedError);
  });
});

describe('back-pressure and truncate', () => {
  it('appends beyond capacity wait, then resume after truncate frees space', async () => {
    const dev = memDevice();
    const region = { startBlock: 0, blockCount: 10 }; // 8-block area of 512 bytes
    const wal = await WriteAheadLog.create(dev, region);
    const lsns: number[] = [];
    for (let i = 0; i < 4; i++) lsns.push(await wal.append(1, payloadOf(900, i))); // 2 blocks each: full
    expect(wal.fillRatio).toBe(1);
    expect(wal.usedBytes).toBe(wal.capacityBytes);
    let resolved = 0;
    const waiting = [wal.append(1, payloadOf(900, 4)), wal.append(1, payloadOf(900, 5))].map((p) =>
      p.then((lsn) => {
        resolved++;
        return lsn;
      }),
    );
    await settle(20);
    expect(resolved).toBe(0);
    await wal.truncate(1); // frees 2 blocks: room for one of them
    await settle(20);
    expect(resolved).toBe(1);
    await wal.truncate(3);
    expect(await Promise.all(waiting)).toEqual([5, 6]);
    expect(wal.fillRatio).toBe(0.75); // records 4, 5, 6: 2 blocks each of 8
    await wal.close();
    const reopened = await WriteAheadLog.open(dev, region);
    const records = await collect(reopened.replay());
    expect(records.map((r) => r.lsn)).toEqual([4, 5, 6]);
    expect(records[2]!.payload).toEqual(payloadOf(900, 5));
  });

  it('truncate of everything empties the log; reopen keeps the head and continues LSNs', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    for (let i = 0; i < 5; i++) await wal.append(1, payloadOf(300, i));
    await wal.truncate(5);
    expect(wal.usedBytes).toBe(0);
    await wal.close();
    const reopened = await WriteAheadLog.open(dev, REGION);
    expect(reopened.tailInfo).toEqual({ lastLsn: 5, stoppedAt: 'empty', knownDurableLsn: 5 });
    expect(await collect(reopened.replay())).toEqual([]);
    expect(await reopened.append(1, payloadOf(5, 6))).toBe(6);
    await reopened.close();
    expect((await collect((await WriteAheadLog.open(dev, REGION)).replay())).map((r) => r.lsn)).toEqual([6]);
  });

  it('truncate of records not yet durable syncs them first', async () => {
    const wal = await WriteAheadLog.create(memDevice(), REGION);
    await wal.append(1, payloadOf(5, 1), { durable: false });
    await wal.truncate(1);
    expect(wal.durableLsn).toBe(1);
    expect(wal.usedBytes).toBe(0);
  });

  it('wraps around the area many times with truncate, and replays correctly after a crash', async () => {
    const dev = new FaultyBlockDevice(memDevice(40));
    const region = { startBlock: 2, blockCount: 12 }; // 10-block area
    const wal = await WriteAheadLog.create(dev, region);
    let lastTruncated = 0;
    for (let i = 1; i <= 200; i++) {
      await wal.append(i % 256, payloadOf(100 + ((i * 37) % 700), i));
      if (wal.fillRatio > 0.6) {
        lastTruncated = i - 2;
        await wal.truncate(lastTruncated);
      }
    }
    expect(wal.stats().bytesWritten).toBeGreaterThan(5 * wal.capacityBytes);
    const pending = wal.append(7, payloadOf(400, 201), { durable: false });
    await pending;
    const crashed = dev.powerCut({ seed: 3 });
    const reopened = await WriteAheadLog.open(crashed, region);
    const records = await collect(reopened.replay());
    expect(records[0]!.lsn).toBe(lastTruncated + 1);
    expect(records.at(-1)!.lsn).toBeGreaterThanOrEqual(200);
    for (const r of records) expect(r.payload).toEqual(payloadOf(r.lsn === 201 ? 400 : 100 + ((r.lsn * 37) % 700), r.lsn));
  });
});

describe('recovery', () => {
  /** The image of a new, empty log whose header is replaced by a checksummed one with `change` applied. */
  async function freshLogWithHeader(change: { headPos?: number; headLsn?: number }): Promise<Uint8Array> {
    const dev = memDevice();
    await (await WriteAheadLog.create(dev, REGION)).close();
    const image = dev.image();
    const slot = (REGION.startBlock + 1) * BS;
    const found = decodeHeader(image.subarray(slot, slot + BS));
    if (!found.ok) throw new Error('the fresh log has no header in slot 1');
    const block = new Uint8Array(BS);
    // Two generations on: the same slot, and newer than the header it replaces.
    encodeHeader({ ...found.header, ...change, generation: found.header.generation + 2 }, block);
    image.set(block, slot);
    return image;
  }

  it('a lost head record is corrected in memory on a read-only device, and on disk by a writable open', async () => {
    // The header names a head in the middle of a block where no record survived (it was not durable at the crash).
    const image = await freshLogWithHeader({ headPos: 100 });
    const reader = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS, { readOnly: true }), REGION);
    expect(reader.tailInfo.stoppedAt).toBe('empty');
    expect(await collect(reader.replay())).toEqual([]);
    await reader.close();
    const writable = MemoryBlockDevice.fromImage(image, BS);
    const wal = await WriteAheadLog.open(writable, REGION);
    expect(await wal.append(1, payloadOf(10, 1))).toBe(1);
    await wal.close();
    const again = await WriteAheadLog.open(MemoryBlockDevice.fromImage(writable.image(), BS, { readOnly: true }), REGION);
    expect((await collect(again.replay())).map((r) => r.lsn)).toEqual([1]);
  });

  it('an append past LSN 2^53 - 1 is refused (typed) before it takes an LSN; every acknowledged record reopens', async () => {
    // A checksummed header whose head is near the largest LSN a record can hold (only a crafted log gets there).
    const image = await freshLogWithHeader({ headLsn: Number.MAX_SAFE_INTEGER - 1 });
    const crafted = MemoryBlockDevice.fromImage(image, BS);
    const wal = await WriteAheadLog.open(crafted, REGION);
    expect(await wal.append(1, payloadOf(10, 1))).toBe(Number.MAX_SAFE_INTEGER - 1);
    expect(await wal.append(1, payloadOf(10, 2))).toBe(Number.MAX_SAFE_INTEGER);
    await expect(wal.append(1, payloadOf(10, 3))).rejects.toBeInstanceOf(CorruptionError);
    expect(wal.lastLsn).toBe(Number.MAX_SAFE_INTEGER);
    await wal.close();
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(crafted.image(), BS), REGION);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER]);
  });

  async function threeBatches(): Promise<{ dev: MemoryBlockDevice; positions: number[] }> {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    // Batch i (one record of 600 bytes: 2 blocks) starts at area block 2*i.
    for (let i = 0; i < 3; i++) await wal.append(1, payloadOf(600, i));
    await wal.close();
    return { dev, positions: [0, 2 * BS, 4 * BS] };
  }

  it('garbage after the tail is the end of the log', async () => {
    const { dev } = await threeBatches();
    const image = dev.image();
    for (let i = areaByte(6 * BS); i < areaByte(20 * BS); i++) image[i] = (i * 131) & 0xff;
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
    expect(reopened.tailInfo).toMatchObject({ lastLsn: 3, stoppedAt: 'end' });
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([1, 2, 3]);
  });

  it('a damaged record followed by later acknowledged batches is corruption, not a torn tail', async () => {
    const { dev, positions } = await threeBatches();
    const image = dev.image();
    image[areaByte(positions[1]! + RECORD_HEADER_SIZE + 17)]! ^= 0x40; // one bit of record 2's payload
    const err = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).what).toBe('wal');
    expect((err as CorruptionError).message).toMatch(/record 2/);
  });

  it('a damaged header length in the middle is corruption too (length distrusted)', async () => {
    const { dev, positions } = await threeBatches();
    const image = dev.image();
    new DataView(image.buffer).setUint32(areaByte(positions[1]! + 28), 0xfffffff0, true);
    await expect(WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION)).rejects.toBeInstanceOf(CorruptionError);
  });

  it('damage to the last batch is a torn tail', async () => {
    const { dev, positions } = await threeBatches();
    const image = dev.image();
    image[areaByte(positions[2]! + RECORD_HEADER_SIZE + 500)]! ^= 1;
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
    expect(reopened.tailInfo).toMatchObject({ lastLsn: 2, stoppedAt: 'torn' });
    expect(await reopened.append(1, new Uint8Array(3))).toBe(3);
  });

  it('a stale record with the right LSN and epoch but a broken chain is not replayed', async () => {
    const { dev, positions } = await threeBatches();
    const image = dev.image();
    // Rewrite record 3 as a self-consistent record (valid crc, lsn 3, same epoch) whose prevCrc is wrong, as a
    // leftover from an older write at that position would be.
    const at = areaByte(positions[2]!);
    const view = new DataView(image.buffer);
    const epoch = view.getUint32(at + 24, true);
    const payload = payloadOf(600, 99);
    encodeRecordHeader(image, at, {
      prevCrc: 0x12345678, lsn: 3, durableLsn: 2, epoch, length: payload.byteLength, type: 1, flags: 1, reserved: 0,
    });
    image.set(payload, at + RECORD_HEADER_SIZE);
    setRecordCrc(image, at, recordCrc(image.subarray(at, at + RECORD_HEADER_SIZE), payload));
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
    expect(reopened.tailInfo.lastLsn).toBe(2);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([1, 2]);
  });

  it('falls back to the other header slot when the newest one is torn', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    for (let i = 0; i < 4; i++) await wal.append(1, payloadOf(100, i));
    await wal.truncate(1); // generation 2 -> slot A
    await wal.truncate(2); // generation 3 -> slot B
    await wal.close();
    const intact = await WriteAheadLog.open(MemoryBlockDevice.fromImage(dev.image(), BS), REGION);
    expect((await collect(intact.replay())).map((r) => r.lsn)).toEqual([3, 4]);
    const image = dev.image();
    image[(REGION.startBlock + 1) * BS + 20]! ^= 0xff; // slot B (generation 5, the copy) damaged
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([3, 4]); // generation 4: the same head
    const imageA = dev.image();
    imageA[REGION.startBlock * BS + 20]! ^= 0xff; // slot A (generation 4) damaged
    const reopenedA = await WriteAheadLog.open(MemoryBlockDevice.fromImage(imageA, BS), REGION);
    expect((await collect(reopenedA.replay())).map((r) => r.lsn)).toEqual([3, 4]);
  });

  it('a truncate torn before its header was durable falls back to the previous head', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    for (let i = 0; i < 4; i++) await wal.append(1, payloadOf(100, i));
    await wal.truncate(1); // generation 2 in slot A, its copy (3) in slot B
    const before = dev.image();
    await wal.truncate(2); // generation 4 in slot A: torn below, before its copy was written
    await wal.close();
    const image = dev.image();
    image.set(before.subarray((REGION.startBlock + 1) * BS, (REGION.startBlock + 2) * BS), (REGION.startBlock + 1) * BS);
    image[REGION.startBlock * BS + 20]! ^= 0xff;
    const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
    expect((await collect(reopened.replay())).map((r) => r.lsn)).toEqual([2, 3, 4]); // generation 3's head
  });

  it('a new log survives one damaged header slot before its first truncate (create writes both slots)', async () => {
    const dev = memDevice();
    const wal = await WriteAheadLog.create(dev, REGION);
    for (let i = 0; i < 3; i++) await wal.append(1, payloadOf(100, i));
    await wal.close();
    for (const slot of [0, 1]) {
      for (const at of [0, 8, 12, 20, 44]) {
        const image = dev.image();
        image[(REGION.startBlock + slot) * BS + at]! ^= 0x10;
        const reopened = await WriteAheadLog.open(MemoryBlockDevice.fromImage(image, BS), REGION);
        expect((await collect(reopened.replay())).map((r) => r.lsn), `slot ${slot} byte ${at}`).toEqual([1, 2, 3]);
        await reopened.close();
      }
    }
    // The next header write (generation 2, slot A) replaces the copy; both slots damaged is still no log.
    const both = dev.image();
    both[REGION.startBlock * BS + 20]! ^= 0x10;
    both[(REGION.startBlock + 1) * BS + 20]! ^= 0x10;
    await expect(WriteAheadLog.open(MemoryBlockDevice.fromImage(both, BS), REGION)).rejects.toBeInstanceOf(FormatError);
  });
});
