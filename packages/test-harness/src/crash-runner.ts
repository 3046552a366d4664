import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CrashChildConfig, type CrashChildLine, VERSIONS_PER_ROUND } from './crash-protocol.js';
import { OutcomeModel, type KeyState } from './outcome-model.js';
import { SeededRandom } from './random.js';
import { type AdapterModuleSpec, type StoreAdapter, loadAdapter } from './store-adapter.js';
import { describe, verifyAgainstModel } from './verify.js';
import { checkAdapter, checkCount, checkFunction, checkNumber, checkOptionsObject, checkSeed, checkString } from './options.js';
import { InvalidArgumentError } from '@vde/block-device';

export interface CrashCampaignOptions {
  /** How the child (and, unless `verifyWith` is given, the parent) builds the adapter. */
  adapter: AdapterModuleSpec;
  /** Adapter the parent verifies with (default: `loadAdapter(adapter)`). */
  verifyWith?: StoreAdapter;
  /** The container file; it persists across the rounds of the campaign. */
  path: string;
  seed: number;
  /** Rounds: start a child, kill it with SIGKILL at a random moment, verify. */
  kills: number;
  /** Concurrent writers in the child (default 64). */
  writers?: number;
  /** Keys the writers share (default 256). */
  keys?: number;
  /** Largest value (default 1 MiB). */
  maxValueBytes?: number;
  /** Fraction of deletes (default 0.15). */
  deleteRatio?: number;
  /** The kill comes uniformly between these many ms after the child reported ready (default 0 … 1500). */
  minKillDelayMs?: number;
  maxKillDelayMs?: number;
  /** The child script (plain JS); default `crash-child.js` of this package's `dist`. */
  childScript?: string;
  /** Extra node arguments for the child. */
  nodeArgs?: string[];
  /** Called after each round. */
  onRound?: (round: CrashRoundResult) => void;
}

export interface CrashRoundResult {
  round: number;
  killDelayMs: number;
  /** Writes acknowledged by the child before the kill (each checked). */
  acknowledged: number;
  /** Writes issued but not acknowledged at the kill. */
  inFlight: number;
  keysChecked: number;
  lost: number;
  corrupt: number;
  /** False when the reopen or the store's `check()` failed. */
  consistent: boolean;
  problems: string[];
}

export interface CrashCampaignReport {
  kills: number;
  acknowledged: number;
  keysChecked: number;
  lost: number;
  corrupt: number;
  /** Rounds whose reopen or `check()` failed, or whose child died on its own. */
  failedRounds: number;
  /** The first problems found, each prefixed by its round (at most 50). */
  problems: string[];
}

/** The `dist` file of this package named `file` (works from `src` too, for tests run on the sources). */
export function distFile(file: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidate = join(here, file);
  if (existsSync(candidate) || basename(here) !== 'src') return candidate;
  return join(here, '..', 'dist', file);
}

/**
 * Runs a crash campaign: each round starts a child process running `writers` concurrent writers against the
 * container at `path`, kills it with SIGKILL at a seeded random moment, reopens the container in this process and
 * checks every acknowledged write (`OutcomeModel`, `verifyAgainstModel`) and the store's `check()`. The state each
 * round ends with is the next round's starting state.
 */
export async function runCrashCampaign(options: CrashCampaignOptions): Promise<CrashCampaignReport> {
  const o = checkOptionsObject('runCrashCampaign', options);
  const spec = o.adapter as Record<string, unknown> | null | undefined;
  if (spec === null || typeof spec !== 'object' || typeof spec.module !== 'string' || typeof spec.exportName !== 'string') {
    throw new InvalidArgumentError('runCrashCampaign: adapter must be a module spec { module, exportName, options? } (see vdeAdapterSpec)');
  }
  if (o.verifyWith !== undefined) checkAdapter('runCrashCampaign', o, 'verifyWith');
  checkString('runCrashCampaign', o, 'path');
  checkSeed('runCrashCampaign', o, 'seed', false);
  checkCount('runCrashCampaign', o, 'kills', 0, false);
  for (const name of ['writers', 'keys']) checkCount('runCrashCampaign', o, name, 1);
  for (const name of ['maxValueBytes', 'minKillDelayMs', 'maxKillDelayMs']) checkCount('runCrashCampaign', o, name, 0);
  checkNumber('runCrashCampaign', o, 'deleteRatio', 0);
  if (typeof o.deleteRatio === 'number' && o.deleteRatio > 1) {
    throw new InvalidArgumentError(`runCrashCampaign: deleteRatio must be from 0 to 1, got ${o.deleteRatio}`);
  }
  if ((options.minKillDelayMs ?? 0) > (options.maxKillDelayMs ?? 1500)) {
    throw new InvalidArgumentError('runCrashCampaign: minKillDelayMs must not exceed maxKillDelayMs (default 1500)');
  }
  if (o.childScript !== undefined) checkString('runCrashCampaign', o, 'childScript');
  if (o.nodeArgs !== undefined && !(Array.isArray(o.nodeArgs) && o.nodeArgs.every((a) => typeof a === 'string'))) {
    throw new InvalidArgumentError('runCrashCampaign: nodeArgs must be an array of strings');
  }
  checkFunction('runCrashCampaign', o, 'onRound');
  const adapter = options.verifyWith ?? (await loadAdapter(options.adapter));
  const rng = new SeededRandom(options.seed);
  const maxValueBytes = options.maxValueBytes ?? 1 << 20;
  const report: CrashCampaignReport = { kills: 0, acknowledged: 0, keysChecked: 0, lost: 0, corrupt: 0, failedRounds: 0, problems: [] };
  let state = new Map<string, KeyState>();
  for (let round = 1; round <= options.kills; round++) {
    const minDelay = options.minKillDelayMs ?? 0;
    const killDelayMs = minDelay + rng.int(Math.max(1, (options.maxKillDelayMs ?? 1500) - minDelay));
    const config: CrashChildConfig = {
      adapter: options.adapter,
      path: options.path,
      seed: options.seed,
      round,
      writers: options.writers ?? 64,
      keys: options.keys ?? 256,
      maxValueBytes,
      deleteRatio: options.deleteRatio ?? 0.15,
    };
    if (round * VERSIONS_PER_ROUND > Number.MAX_SAFE_INTEGER / 2) throw new RangeError('too many rounds');
    const model = new OutcomeModel(state);
    const child = await runChild(options.childScript ?? distFile('crash-child.js'), options.nodeArgs ?? [], config, killDelayMs, model);
    const result: CrashRoundResult = {
      round,
      killDelayMs,
      acknowledged: model.acknowledged,
      inFlight: child.issued - child.ended,
      keysChecked: 0,
      lost: 0,
      corrupt: 0,
      consistent: true,
      problems: [],
    };
    if (child.failure) {
      result.consistent = false;
      result.problems.push(child.failure);
    }
    try {
      const handle = await adapter.open(options.path);
      try {
        const v = await verifyAgainstModel(adapter, handle, model, options.seed, maxValueBytes);
        Object.assign(result, { keysChecked: v.keysChecked, lost: v.lost, corrupt: v.corrupt });
        result.problems.push(...v.problems);
        state = v.state;
        try {
          await handle.check();
        } catch (err) {
          result.consistent = false;
          result.problems.push(`check failed: ${describe(adapter, err)}`);
        }
      } finally {
        await handle.close();
      }
    } catch (err) {
      result.consistent = false;
      result.problems.push(`reopen failed: ${describe(adapter, err)}`);
    }
    report.kills++;
    report.acknowledged += result.acknowledged;
    report.keysChecked += result.keysChecked;
    report.lost += result.lost;
    report.corrupt += result.corrupt;
    if (!result.consistent) report.failedRounds++;
    for (const p of result.problems) if (report.problems.length < 50) report.problems.push(`seed ${options.seed} round ${round}: ${p}`);
    options.onRound?.(result);
    if (result.problems.some((p) => p.startsWith('reopen failed'))) break; // the container is unusable: later rounds would only repeat it
  }
  return report;
}

interface ChildOutcome {
  issued: number;
  ended: number;
  failure?: string;
}

/** Runs one child until `killDelayMs` after it is ready, SIGKILLs it, and feeds its lines to `model`. */
function runChild(script: string, nodeArgs: string[], config: CrashChildConfig, killDelayMs: number, model: OutcomeModel): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const ids = new Map<number, number>();
    const out: ChildOutcome = { issued: 0, ended: 0 };
    let pending = '';
    let stderr = '';
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const onLine = (text: string): void => {
      const line = JSON.parse(text) as CrashChildLine;
      if (line.t === 'ready') {
        timer = setTimeout(() => {
          killed = true;
          child.kill('SIGKILL');
        }, killDelayMs);
      } else if (line.t === 'i') {
        ids.set(line.id, model.invoke(line.k, line.v));
        out.issued++;
      } else {
        const id = ids.get(line.id);
        if (id === undefined) throw new Error(`child reported an unknown write ${line.id}`);
        if (line.t === 'a') model.ack(id);
        else {
          model.fail(id);
          if (line.code.startsWith('untyped')) out.failure ??= `a write failed with an untyped error: ${line.code}`;
        }
        out.ended++;
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          onLine(text);
        } catch (err) {
          child.kill('SIGKILL');
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
      // A partial last line at the kill is dropped: its event (an ack) was not fully reported, so it does not count.
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 10_000) stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (!killed) out.failure = `child exited on its own (code ${String(code)}, signal ${String(signal)}): ${stderr.trim().slice(0, 2000)}`;
      resolve(out);
    });
  });
}

/** The adapter spec for VDE as built in this package's dist (for the child process). */
export function vdeAdapterSpec(options: Record<string, unknown> = {}): AdapterModuleSpec {
  return { module: distFile('vde-adapter.js'), exportName: 'createVdeAdapter', options };
}
