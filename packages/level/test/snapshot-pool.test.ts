import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { VirtualDiskEngine } from '@vde/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssueOrder } from '../src/issue-order.js';
import { SnapshotPool } from '../src/snapshot-lease.js';
import { scratchDir } from './helpers.js';

let dir: string;

beforeAll(async () => {
  dir = await scratchDir('vde-level-pool-');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('SnapshotPool', () => {
  it('shares one engine snapshot until a write is issued, and closes it when the last lease goes', async () => {
    const engine = await VirtualDiskEngine.open(path.join(dir, 'pool.vde'), { walSizeBytes: 1 << 20 });
    const order = new IssueOrder();
    const pool = new SnapshotPool(engine, order);
    const checkpointsBefore = engine.stats().checkpoints;
    const a = pool.capture();
    const b = pool.capture();
    const [sa, sb] = await Promise.all([a.snapshot, b.snapshot]);
    expect(sa).toBe(sb);
    expect(engine.stats().checkpoints).toBe(checkpointsBefore + 1);

    pool.noteWrite();
    await order.write(() => engine.store('k', 'v'));
    const c = pool.capture();
    const sc = await c.snapshot;
    expect(sc).not.toBe(sa);
    expect(await sc.exists('k')).toBe(true);
    expect(await sa.exists('k')).toBe(false);

    await a.release();
    expect(sa.closed).toBe(false);
    await b.release();
    await b.release(); // idempotent
    expect(sa.closed).toBe(true);
    await c.release();
    expect(sc.closed).toBe(false); // still current: kept for the next reader
    await pool.close();
    expect(sc.closed).toBe(true);
    await expect(a.snapshot).rejects.toMatchObject({ code: 'ERR_VDE_CLOSED' });
    await engine.check();
    await engine.close();
  });
});

describe('IssueOrder', () => {
  it('submits a write only after the reads issued before it, and writes in issue order', async () => {
    const order = new IssueOrder();
    const log: string[] = [];
    let finishRead!: () => void;
    const read = order.read(
      () =>
        new Promise<void>((resolve) => {
          finishRead = () => {
            log.push('read done');
            resolve();
          };
        }),
    );
    const w1 = order.write(async () => {
      log.push('w1');
    });
    const w2 = order.write(async () => {
      log.push('w2');
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(log).toEqual([]);
    finishRead();
    await Promise.all([read, w1, w2]);
    expect(log).toEqual(['read done', 'w1', 'w2']);
  });

  it('holds later writes behind a clear and later reads behind a multi-key batch', async () => {
    const order = new IssueOrder();
    const log: string[] = [];
    let finish!: () => void;
    const clear = order.write(() => new Promise<void>((resolve) => (finish = resolve)).then(() => void log.push('clear')), {
      holdLaterWrites: true,
      multiKey: true,
    });
    const put = order.write(async () => void log.push('put'));
    const get = order.read(async () => void log.push('get'));
    await new Promise((r) => setTimeout(r, 5));
    expect(log).toEqual([]);
    finish();
    await Promise.all([clear, put, get]);
    expect(log.indexOf('clear')).toBe(0);
    expect(log).toContain('put');
    expect(log).toContain('get');
  });

  it('starts synchronously when nothing is in flight', () => {
    const order = new IssueOrder();
    let ran = false;
    void order.write(async () => {
      ran = true;
    });
    expect(ran).toBe(true);
  });
});
