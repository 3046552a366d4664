import { MemoryBlockDevice } from '@vde/block-device';
import { TypedErrorDevice, withTimeout } from './device-wrappers.js';
import { type FaultErrorCode, type FaultOp, FaultyBlockDevice } from './faulty-block-device.js';
import { OutcomeModel } from './outcome-model.js';
import { SeededRandom } from './random.js';
import type { StoreAdapter, StoreHandle } from './store-adapter.js';
import { hash32, metadataFor, sameBytes, sameMetadata, valueFor } from './values.js';
import { describe, verifyAgainstModel } from './verify.js';
import { checkAdapter, checkCount, checkFunction, checkNumber, checkOptionsObject, checkSeed } from './options.js';

export interface IoFaultSweepOptions {
  /** Opens the store on a `BlockDevice` (errors are typed by `TypedErrorDevice`, as a file device would). */
  adapter: StoreAdapter;
  /** Trials: trial i injects a fault at the n-th I/O, n = 1 + (i mod `maxNth`), cycling error codes and I/O kinds. */
  faults: number;
  /** Largest n of "fail the n-th I/O" (default 120). */
  maxNth?: number;
  seed: number;
  blockSize?: number;
  /** Concurrent writers and operations per writer of the workload after the fault is armed (defaults 4 and 10). */
  writers?: number;
  opsPerWriter?: number;
  maxValueBytes?: number;
  /** Every call must settle within this (default 10,000 ms). */
  timeoutMs?: number;
  onTrial?: (trial: IoFaultTrial) => void;
}

export interface IoFaultTrial {
  nth: number;
  code: FaultErrorCode;
  op: FaultOp;
  sticky: boolean;
  /** Calls that failed with one of the adapter's I/O codes. */
  typedFailures: number;
  /** After the fault was cleared, the store accepted a write (`usable`) or refused it with an I/O code (`refused`). */
  after: 'usable' | 'refused' | 'violation';
  acknowledged: number;
  lost: number;
  corrupt: number;
  violations: string[];
}

export interface IoFaultSweepReport {
  trials: number;
  typedFailures: number;
  usableAfter: number;
  refusedAfter: number;
  acknowledged: number;
  lost: number;
  corrupt: number;
  violations: number;
  problems: string[];
}

const CODES: FaultErrorCode[] = ['EIO', 'ENOSPC'];
const OPS: FaultOp[] = ['any', 'write', 'sync', 'read'];

/**
 * The I/O fault sweep: a store on `FaultyBlockDevice` gets some state, then the n-th I/O of a kind fails with EIO
 * or ENOSPC (once, or sticky) under a concurrent workload. Every failing call must fail with one of
 * `adapter.ioCodes`; reads that succeed must return an allowed version. With the fault cleared, the store either
 * takes a write or refuses it with an I/O code (poisoned). Then the device's image after a power cut (keep-all,
 * or a seeded random cut) is reopened: every acknowledged write must be there and `check()` must pass.
 */
export async function runIoFaultSweep(options: IoFaultSweepOptions): Promise<IoFaultSweepReport> {
  const o = checkOptionsObject('runIoFaultSweep', options);
  checkAdapter('runIoFaultSweep', o);
  checkCount('runIoFaultSweep', o, 'faults', 0, false);
  checkSeed('runIoFaultSweep', o, 'seed', false);
  for (const name of ['maxNth', 'writers', 'opsPerWriter']) checkCount('runIoFaultSweep', o, name, 1);
  checkCount('runIoFaultSweep', o, 'blockSize', 512);
  checkCount('runIoFaultSweep', o, 'maxValueBytes', 0);
  checkNumber('runIoFaultSweep', o, 'timeoutMs', 0, true, true);
  checkFunction('runIoFaultSweep', o, 'onTrial');
  const report: IoFaultSweepReport = {
    trials: 0,
    typedFailures: 0,
    usableAfter: 0,
    refusedAfter: 0,
    acknowledged: 0,
    lost: 0,
    corrupt: 0,
    violations: 0,
    problems: [],
  };
  const maxNth = options.maxNth ?? 120;
  for (let i = 0; i < options.faults; i++) {
    const nth = 1 + (i % maxNth);
    const round = Math.floor(i / maxNth);
    const code = CODES[(i + round) % 2]!;
    const op = OPS[(Math.floor(i / 2) + round) % OPS.length]!;
    const sticky = (Math.floor(i / 8) + round) % 2 === 1;
    const trial = await ioFaultOnce(options, hash32(`trial ${i}`, options.seed), nth, code, op, sticky, i % 2 === 0 ? 'keep-all' : 'random');
    report.trials++;
    report.typedFailures += trial.typedFailures;
    if (trial.after === 'usable') report.usableAfter++;
    if (trial.after === 'refused') report.refusedAfter++;
    report.acknowledged += trial.acknowledged;
    report.lost += trial.lost;
    report.corrupt += trial.corrupt;
    report.violations += trial.violations.length;
    for (const v of trial.violations) if (report.problems.length < 50) report.problems.push(`trial ${i} (${code} at ${op} #${nth}${sticky ? ', sticky' : ''}): ${v}`);
    options.onTrial?.(trial);
  }
  return report;
}

async function ioFaultOnce(
  options: IoFaultSweepOptions,
  seed: number,
  nth: number,
  code: FaultErrorCode,
  op: FaultOp,
  sticky: boolean,
  cutMode: 'keep-all' | 'random',
): Promise<IoFaultTrial> {
  const { adapter } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBytes = options.maxValueBytes ?? 24 * 1024;
  const trial: IoFaultTrial = { nth, code, op, sticky, typedFailures: 0, after: 'violation', acknowledged: 0, lost: 0, corrupt: 0, violations: [] };
  const faulty = new FaultyBlockDevice(new MemoryBlockDevice({ blockSize: options.blockSize ?? 4096 }));
  const model = new OutcomeModel();
  const keys = 8;
  let version = 1;
  const timed = <T>(what: string, p: Promise<T>): Promise<T> => withTimeout(p, timeoutMs, () => new Error(`${what} did not settle within ${timeoutMs} ms (hang)`));
  /** An expected failure: typed with an I/O code, else a violation. */
  const failed = (what: string, err: unknown): void => {
    const c = adapter.errorCode(err);
    if (c !== undefined && adapter.ioCodes.includes(c)) trial.typedFailures++;
    else trial.violations.push(`${what}: ${describe(adapter, err)}`);
  };
  const store: StoreHandle = await adapter.open(new TypedErrorDevice(faulty));
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const v = version++;
    const id = model.invoke(key, v);
    await store.put(key, valueFor(seed, key, v, maxBytes), metadataFor(key, v));
    model.ack(id);
  }
  faulty.failAfter(nth, code, { op, sticky });
  await Promise.all(
    Array.from({ length: options.writers ?? 4 }, async (_, w) => {
      const rnd = new SeededRandom(hash32(`w${w}`, seed));
      for (let i = 0; i < (options.opsPerWriter ?? 10); i++) {
        const key = `k${rnd.int(keys)}`;
        const kind = rnd.int(10);
        if (kind < 3) {
          try {
            // A read overlapping a write may return the value from before it (it linearizes first): what was
            // allowed when the read was invoked stays allowed, plus whatever became possible while it ran.
            const before = model.allowed(key);
            const got = await timed(`get ${key}`, store.get(key));
            const allowed = [...new Set([...before, ...model.allowed(key)])];
            const ok = got
              ? allowed.some((v) => v !== null && sameBytes(got.value, valueFor(seed, key, v, maxBytes)) && sameMetadata(got.metadata, metadataFor(key, v)))
              : allowed.includes(null);
            if (!ok) trial.violations.push(`get ${key} returned ${got ? `${got.value.byteLength} bytes of no allowed version` : 'nothing'}`);
          } catch (err) {
            failed(`get ${key}`, err);
          }
          continue;
        }
        const v = kind < 5 ? null : version++;
        const id = model.invoke(key, v);
        try {
          if (v === null) await timed(`delete ${key}`, store.delete(key));
          else await timed(`put ${key}`, store.put(key, valueFor(seed, key, v, maxBytes), metadataFor(key, v)));
          model.ack(id);
        } catch (err) {
          model.fail(id);
          failed(v === null ? `delete ${key}` : `put ${key}`, err);
        }
      }
    }),
  );
  faulty.clearFaults();
  // Usable, or refusing clearly?
  {
    const key = 'k0';
    const v = version++;
    const id = model.invoke(key, v);
    try {
      await timed('put after the fault', store.put(key, valueFor(seed, key, v, maxBytes), metadataFor(key, v)));
      model.ack(id);
      trial.after = 'usable';
    } catch (err) {
      model.fail(id);
      const c = adapter.errorCode(err);
      if (c !== undefined && adapter.ioCodes.includes(c)) trial.after = 'refused';
      else trial.violations.push(`put after the fault: ${describe(adapter, err)}`);
    }
  }
  try {
    await timed('close', store.close());
  } catch (err) {
    failed('close', err);
  }
  trial.acknowledged = model.acknowledged - keys;
  const image = faulty.powerCut({ seed, mode: cutMode });
  try {
    const reopened = await timed('reopen', adapter.open(image));
    try {
      const v = await verifyAgainstModel(adapter, reopened, model, seed, maxBytes);
      trial.lost = v.lost;
      trial.corrupt = v.corrupt;
      trial.violations.push(...v.problems);
      await timed('check', reopened.check());
    } finally {
      await reopened.close().catch(() => undefined);
    }
  } catch (err) {
    trial.violations.push(`reopen/check after a ${cutMode} power cut: ${describe(adapter, err)}`);
  }
  return trial;
}
