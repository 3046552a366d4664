import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryBlockDevice, type BlockDevice } from '@vde/block-device';
import { FaultyBlockDevice, SeededRandom } from '@vde/test-harness';
import { WriteAheadLog } from '@vde/wal';
import { collect, payloadOf } from './helpers.js';

// WAL_RUNS overrides the count for a one-off deeper run without the full VDE_LONG suite.
const NUM_RUNS = process.env.VDE_LONG ? 50_000 : Number(process.env.WAL_RUNS ?? 2_000);

/** Forwards to a FaultyBlockDevice and pulls the plug just before the `cutAt`-th write or sync. */
class CuttingDevice implements BlockDevice {
  ops = 0;
  image: MemoryBlockDevice | undefined;
  constructor(
    readonly faulty: FaultyBlockDevice,
    readonly cutAt: number,
    readonly seed: number,
  ) {}
  get blockSize(): number {
    return this.faulty.blockSize;
  }
  get blockCount(): number {
    return this.faulty.blockCount;
  }
  get readOnly(): boolean {
    return false;
  }
  read(b: number, c: number): Promise<Uint8Array> {
    return this.faulty.read(b, c);
  }
  readInto(b: number, buf: Uint8Array): Promise<void> {
    return this.faulty.readInto(b, buf);
  }
  write(b: number, d: Uint8Array): Promise<void> {
    this.tick();
    return this.faulty.write(b, d);
  }
  sync(): Promise<void> {
    this.tick();
    return this.faulty.sync();
  }
  grow(n: number): Promise<void> {
    return this.faulty.grow(n);
  }
  close(): Promise<void> {
    return this.faulty.close();
  }
  cut(): MemoryBlockDevice {
    this.image ??= this.faulty.powerCut({ seed: this.seed });
    return this.image;
  }
  protected tick(): void {
    if (++this.ops === this.cutAt) this.cut();
  }
}

/**
 * A CuttingDevice that offers `writeDurable` as the FaultyBlockDevice's write then sync, each of which can be cut:
 * cut at the first, the durable write is lost; cut at the second, it was issued but not synced, so the power cut may
 * keep, drop or tear it, as a real O_DSYNC write interrupted by a power loss would be.
 */
class DurableCuttingDevice extends CuttingDevice {
  async writeDurable(b: number, d: Uint8Array): Promise<void> {
    this.tick();
    await this.faulty.write(b, d);
    this.tick();
    await this.faulty.sync();
  }
}

interface Model {
  /** What each LSN handed out was appended with. */
  appended: Map<number, { type: number; payload: Uint8Array }>;
  /** Highest LSN acknowledged durable (append resolved or sync resolved). */
  ackedDurable: number;
  /** Highest LSN any truncate was asked for (acknowledged or not). */
  truncateAsked: number;
}

/**
 * A random workload of rounds of concurrent appends (durable and relaxed, sizes from 0 to several blocks), syncs
 * and truncates, cut by a power loss at a random write/sync. Never asks for more space than it frees, so it
 * cannot wait forever on back-pressure.
 */
async function workload(wal: WriteAheadLog, rng: SeededRandom, rounds: number, model: Model): Promise<void> {
  const blockSize = 512;
  for (let round = 0; round < rounds; round++) {
    const k = 1 + rng.int(6);
    const sizes = Array.from({ length: k }, () => (rng.int(8) === 0 ? rng.int(3 * blockSize) : rng.int(200)));
    const needed = sizes.reduce((sum, n) => sum + wal.recordBytes(n), 0);
    if (needed > wal.capacityBytes) continue;
    try {
      if (wal.usedBytes + needed > wal.capacityBytes || rng.int(4) === 0) {
        const upTo = wal.usedBytes + needed > wal.capacityBytes ? wal.lastLsn : rng.int(wal.durableLsn + 1);
        model.truncateAsked = Math.max(model.truncateAsked, upTo);
        await wal.truncate(upTo);
      }
    } catch {
      return; // the power went out
    }
    const ops: Promise<unknown>[] = [];
    for (const n of sizes) {
      // Some appends arrive a few microtasks later, while the batch before them is being written: they go out in
      // a second batch beside it (two in flight) or start one early (eager start).
      if (ops.length > 0 && rng.int(2) === 0) for (let y = 1 + rng.int(6); y > 0; y--) await Promise.resolve();
      const type = rng.int(256);
      const payload = payloadOf(n, rng.int(1000));
      const durable = rng.int(5) !== 0;
      const before = wal.lastLsn;
      const p = wal.append(type, payload, { durable });
      if (wal.lastLsn !== before + 1) {
        // Refused at once (the log was poisoned by the power cut during the yields above): nothing was appended.
        await p.then(
          () => check(false, 'an append that took no LSN resolved'),
          (err: unknown) => check((err as { code?: string }).code === 'ERR_VDE_POISONED', `append refused with ${String(err)}`),
        );
        break;
      }
      model.appended.set(before + 1, { type, payload });
      const op = p.then((lsn) => {
        check(lsn === before + 1, `append resolved with ${lsn}, expected ${before + 1}`);
        if (durable) model.ackedDurable = Math.max(model.ackedDurable, lsn);
      });
      op.catch(() => undefined); // read by allSettled below; this only keeps a rejection during the yields handled
      ops.push(op);
    }
    if (rng.int(4) === 0) {
      const target = wal.lastLsn;
      ops.push(wal.sync().then(() => (model.ackedDurable = Math.max(model.ackedDurable, target))));
    }
    const results = await Promise.allSettled(ops);
    if (results.some((r) => r.status === 'rejected')) {
      for (const r of results) {
        // A failed append must be the power cut (ClosedError) or the poisoning after it, never a wrong LSN.
        if (r.status === 'rejected') {
          const code = (r.reason as { code?: string }).code;
          check(code === 'ERR_VDE_CLOSED' || code === 'ERR_VDE_POISONED', `append failed with ${String(r.reason)}`);
        }
      }
      return;
    }
  }
}

/** A plain assertion: the hot loops below check thousands of records, and `expect` is too slow for that. */
function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** After recovery: exactly a prefix of what was appended, holding every acknowledged record not truncated. */
async function checkRecovered(wal: WriteAheadLog, model: Model): Promise<number> {
  const records = await collect(wal.replay());
  const tail = wal.tailInfo.lastLsn;
  check((records.at(-1)?.lsn ?? tail) === tail, `replay ends at ${records.at(-1)?.lsn} but the tail is ${tail}`);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    check(i === 0 || r.lsn === records[i - 1]!.lsn + 1, `LSN ${r.lsn} follows ${records[i - 1]?.lsn}`);
    const want = model.appended.get(r.lsn);
    check(want !== undefined, `LSN ${r.lsn} was never appended`);
    check(r.type === want.type && sameBytes(r.payload, want.payload), `record ${r.lsn} differs from what was appended`);
  }
  check(tail >= model.ackedDurable, `acknowledged LSN ${model.ackedDurable} lost: the tail is ${tail}`);
  check(tail <= Math.max(0, ...model.appended.keys()), `tail ${tail} was never appended`);
  const first = records[0]?.lsn ?? tail + 1;
  const mayStartBy = Math.max(model.truncateAsked, model.ackedDurable) + 1;
  check(first <= mayStartBy, `replay starts at ${first}: records before it were acknowledged and not truncated`);
  return tail;
}

describe.each([
  ['write + sync', CuttingDevice],
  ['writeDurable', DurableCuttingDevice],
])('power cut at a random write or sync (device with %s)', (_name, Device) => {
  it('recovers exactly a prefix of the appended records that holds every acknowledged one', async () => {
    const seen = { torn: 0, end: 0, empty: 0, wrapped: 0, truncated: 0, overlapped: 0, eager: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.integer({ min: 6, max: 40 }),
        fc.integer({ min: 1, max: 120 }),
        async (seed, regionBlocks, cutAt) => {
          const rng = new SeededRandom(seed);
          const region = { startBlock: 1, blockCount: regionBlocks };
          const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: 512, blockCount: regionBlocks + 2 }));
          const dev = new Device(faulty, cutAt, seed);
          const model: Model = { appended: new Map(), ackedDurable: 0, truncateAsked: 0 };
          let wal: WriteAheadLog;
          try {
            wal = await WriteAheadLog.create(dev, region);
          } catch {
            return; // cut while formatting: nothing was promised
          }
          await workload(wal, rng, 30, model);
          const crashed = dev.cut();
          const recovered = await WriteAheadLog.open(crashed, region);
          const tail = await checkRecovered(recovered, model);
          seen[recovered.tailInfo.stoppedAt]++;
          if (wal.stats().bytesWritten > 2 * wal.capacityBytes) seen.wrapped++;
          if (model.truncateAsked > 0) seen.truncated++;
          if (wal.stats().overlappedBatches > 0) seen.overlapped++;
          if (wal.stats().eagerBatches > 0) seen.eager++;

          // The recovered log keeps working: more appends, then a clean reopen sees all of them.
          for (const lsn of [...model.appended.keys()]) if (lsn > tail) model.appended.delete(lsn);
          model.ackedDurable = tail;
          await workload(recovered, rng, 5, model);
          await recovered.close();
          const again = await WriteAheadLog.open(crashed, region);
          check(again.tailInfo.lastLsn === recovered.lastLsn, 'a clean reopen lost records');
          await checkRecovered(again, model);
        },
      ),
      { numRuns: NUM_RUNS },
    );
    // The runs did reach the interesting cases.
    expect(seen.torn).toBeGreaterThan(0);
    expect(seen.end).toBeGreaterThan(0);
    expect(seen.wrapped).toBeGreaterThan(NUM_RUNS / 20);
    expect(seen.truncated).toBeGreaterThan(NUM_RUNS / 4);
    // Two batches in flight only with writeDurable (each durable on its own); the runs reached both ways to start one.
    if (Device === DurableCuttingDevice) {
      expect(seen.overlapped).toBeGreaterThan(NUM_RUNS / 10);
      expect(seen.eager).toBeGreaterThan(NUM_RUNS / 20);
    } else {
      expect(seen.overlapped).toBe(0);
    }
  }, process.env.VDE_LONG || process.env.WAL_RUNS ? 3_600_000 : 120_000);
});
