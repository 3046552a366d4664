import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createVdeAdapter, runCrashCampaign, vdeAdapterSpec } from '@vde/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from './build-dist.js';

let dir = '';
beforeAll(async () => {
  buildDist();
  dir = await mkdtemp(join(tmpdir(), 'vde-crash-test-'));
}, 120_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('crash runner: SIGKILL a child with 64 writers (or one) at random moments (DESIGN.md invariant 3)', () => {
  const random = Math.floor(Math.random() * 2 ** 31);
  // The lone writer's stores commit inline, on its event loop (the engine's inline commits), the others' in the pool.
  for (const [seed, writers] of [[1, 64], [random, 64], [11, 1]] as const) {
    it(`loses nothing acknowledged and tears nothing, seed ${seed}, ${writers} writer${writers > 1 ? 's' : ''}`, async () => {
      if (seed === random) console.log(`crash runner random seed ${seed} (replay: runCrashCampaign({ seed: ${seed}, ... }))`);
      const report = await runCrashCampaign({
        adapter: vdeAdapterSpec({ walSizeBytes: 256 * 1024 }),
        verifyWith: createVdeAdapter(),
        path: join(dir, `c${seed}.vde`),
        seed,
        writers,
        kills: 3,
        maxKillDelayMs: 700,
        minKillDelayMs: 100,
      });
      expect(report.problems).toEqual([]);
      expect(report).toMatchObject({ kills: 3, lost: 0, corrupt: 0, failedRounds: 0 });
      expect(report.acknowledged).toBeGreaterThan(0);
    }, 60_000);
  }

  it('catches a store that acknowledges writes before making them durable', async () => {
    const report = await runCrashCampaign({
      adapter: { module: fileURLToPath(new URL('./fixtures/lossy-adapter.js', import.meta.url)), exportName: 'createLossyAdapter' },
      verifyWith: createVdeAdapter(),
      path: join(dir, 'lossy.vde'),
      seed: 5,
      kills: 1,
      deleteRatio: 0,
      minKillDelayMs: 400,
      maxKillDelayMs: 401,
    });
    expect(report.lost).toBeGreaterThan(0);
    expect(report.problems.join('\n')).toMatch(/missing|overwritten/);
  }, 60_000);
});
