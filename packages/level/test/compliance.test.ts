/**
 * abstract-level's own compliance suite (abstract-level/test, written for tape), run untouched in-process through
 * a tape harness. Tests the suite leaves out are left out only by VdeLevel's manifest (README "Manifest").
 */
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import tape from 'tape';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { VdeLevel, type VdeLevelOptions } from '../src/index.js';

const require = createRequire(import.meta.url);
type Suite = (options: { test: ReturnType<typeof tape.createHarness>; factory: (options?: VdeLevelOptions) => VdeLevel }) => void;
const suite = require('abstract-level/test') as Suite;

interface Row {
  type: string;
  name?: string;
  ok?: boolean;
  skip?: boolean;
  todo?: boolean;
  operator?: string;
  actual?: unknown;
  expected?: unknown;
  error?: unknown;
}

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(await scratchRoot(), 'vde-level-compliance-'));
});

/** A RAM file system where there is one (the suite creates thousands of containers; fsync there is free). */
async function scratchRoot(): Promise<string> {
  try {
    await fs.access('/dev/shm', fs.constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}

afterAll(async () => {
  // A few of the suite's databases finish an open() or close() they started on their own after the suite ends
  // (their lock files come and go for a moment): retry while the directory is still changing.
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
});

test('abstract-level compliance suite passes', { timeout: 600_000 }, async () => {
  const harness = tape.createHarness();
  const dbs: VdeLevel[] = [];
  const factory = (options: VdeLevelOptions = {}): VdeLevel => {
    // A small log keeps the thousands of containers the suite creates small; the behavior is the same.
    const db = new VdeLevel(path.join(dir, `db-${dbs.length}.vde`), { ...options, engine: { walSizeBytes: 1 << 20 } });
    dbs.push(db);
    return db;
  };

  const passed: string[] = [];
  const failed: string[] = [];
  const skipped: string[] = [];
  let currentTest = '';
  const done = new Promise<void>((resolve, reject) => {
    const stream = harness.createStream({ objectMode: true });
    stream.on('data', (row: Row) => {
      if (row.type === 'test') currentTest = row.name ?? '';
      if (row.type !== 'assert') return;
      const label = `${currentTest} :: ${row.name ?? ''}`;
      if (row.skip || row.todo) skipped.push(label);
      else if (row.ok) passed.push(label);
      else failed.push(`${label} (${row.operator ?? ''}: expected ${JSON.stringify(row.expected)}, got ${JSON.stringify(row.actual)}) ${row.error instanceof Error ? row.error.message : ''}`);
    });
    stream.on('end', () => resolve());
    stream.on('error', reject);
  });
  suite({ test: harness, factory });
  await done;
  // Some tests of the suite leave their database open on purpose; close them all.
  await Promise.allSettled(dbs.map((db) => db.close()));

  console.info(`abstract-level suite: ${passed.length} assertions passed, ${failed.length} failed, ${skipped.length} skipped`);
  expect(failed).toEqual([]);
  expect(skipped).toEqual([]);
  // The suite (run on the database and again on a sublevel) makes thousands of assertions; a broken harness
  // that ran nothing would pass the two lines above.
  expect(passed.length).toBeGreaterThan(3000);
});
