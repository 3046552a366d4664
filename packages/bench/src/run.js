// Side-by-side benchmarks: VDE against LMDB (lmdb), LevelDB (classic-level) and SQLite (better-sqlite3), each in
// a fresh temporary directory, all in one process run. Plain JavaScript (ESM); imports @vde/engine from its
// build (run `npx tsc -b` first). Usage:
//   node src/run.js                      the comparison (about 3 minutes on 2 cores)
//   node src/run.js --quick              smaller counts (a smoke test, numbers not comparable)
//   node src/run.js --growth [--max-keys N]   cost growth of VDE at 100k, 1M, 10M keys (long)
// Writes bench-results/results.json and bench-results/chart.svg at the repository root.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { ClassicLevel } from 'classic-level';
import { open as openLmdb } from 'lmdb';
import { VirtualDiskEngine } from '@vde/engine';

const { values: argv } = parseArgs({
  // `pnpm bench -- --quick` hands the script a literal `--` before the flags: drop it.
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    quick: { type: 'boolean' },
    growth: { type: 'boolean' },
    'max-keys': { type: 'string' },
    only: { type: 'string' },
  },
});
const QUICK = argv.quick === true;
const scale = (n) => (QUICK ? Math.max(1, Math.floor(n / 20)) : n);

const COUNTS = {
  w1: scale(1000),
  w2: scale(10_000),
  /** better-sqlite3 is synchronous: its 64 "writers" run one after another, one fsync each; fewer ops keep it short. */
  w2Sequential: scale(2000),
  w3: scale(200_000),
  r1: scale(100_000),
  l1: QUICK ? 8 : 64,
  /** S is W2 on each engine: the same 10,000 stores (in 8 alternating slices), with 64 stripes and with 1. */
  s: scale(10_000),
  raw: scale(1000),
  /** Untimed warm-up of each store before its measurements (see warmUp). */
  warmWrites: scale(24_000),
  warmBulk: scale(20_000),
  rawSeqBytes: (QUICK ? 32 : 256) << 20,
};
const WRITERS = 64;
const BULK_CHUNK = 1000;

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const resultsDir = path.join(repoRoot, 'bench-results');

// ─── helpers ───────────────────────────────────────────────────────────────────────────────────────────────

/** mulberry32: reproducible random key order for R1. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const key = (prefix, i) => `${prefix}${String(i).padStart(9, '0')}`;

async function tempDir(name) {
  return fsp.mkdtemp(path.join(os.tmpdir(), `vde-bench-${name}-`));
}

async function timed(fn) {
  const t0 = performance.now();
  const result = await fn();
  return { ms: performance.now() - t0, result };
}

/** Runs `count` operations with `writers` concurrent loops; `op(i)` may return a promise or a plain value. */
async function concurrent(count, writers, op) {
  let next = 0;
  const loop = async () => {
    for (let i = next++; i < count; i = next++) await op(i);
  };
  await Promise.all(Array.from({ length: writers }, loop));
}

function rss() {
  return process.memoryUsage().rss;
}

function fmt(n) {
  if (n === undefined || n === null) return 'failed';
  if (!Number.isFinite(n)) return '-';
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(n >= 10 ? 1 : 2);
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

async function dirBytes(dir) {
  let total = 0;
  let allocated = 0;
  for (const entry of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const st = await fsp.stat(path.join(entry.parentPath ?? entry.path, entry.name));
    total += st.size;
    allocated += st.blocks * 512;
  }
  return { total, allocated };
}

// ─── the four stores behind one small interface ───────────────────────────────────────────────────────────
// open(dir, { durable }) → { put(k, v), bulk(entries), get(k), list() → count, close() }
// put is each store's fairest durable single write; bulk its fastest way to load many small records.

const stores = {
  vde: {
    label: 'VDE',
    durable: 'store() with durability "sync" (group commit: one fsync per batch of concurrent stores)',
    bulk: 'batch() of 1,000 puts with durability "relaxed", then sync(): one log fsync (durable at the end)',
    async open(dir, { durable = true, stripeCount = 64 } = {}) {
      const vde = await VirtualDiskEngine.open(path.join(dir, 'c.vde'), { durability: durable ? 'sync' : 'relaxed', stripeCount });
      return {
        engine: vde,
        put: (k, v) => vde.store(k, v),
        async bulk(entries) {
          for (let i = 0; i < entries.length; i += BULK_CHUNK) {
            await vde.batch(entries.slice(i, i + BULK_CHUNK).map(([k, v]) => ({ type: 'put', key: k, data: v })));
          }
          // Durable at the end as LevelDB's last batch with { sync: true } is: the log fsynced, no checkpoint.
          await vde.sync();
        },
        get: (k) => vde.retrieve(k),
        async list() {
          let n = 0;
          for await (const info of vde.list()) n += info.size > 0 ? 1 : 1;
          return n;
        },
        close: () => vde.close(),
      };
    },
  },
  lmdb: {
    label: 'lmdb',
    durable:
      'put() awaited until its `flushed` promise (separateFlushed: true): lmdb-js on Linux defaults to overlappingSync, where put() resolves at commit, before the fsync; concurrent put() promises are batched into one transaction by lmdb-js',
    bulk: 'transactionSync() of 1,000 putSync() each (one durable commit per transaction)',
    async open(dir) {
      const db = openLmdb({ path: dir, encoding: 'binary', separateFlushed: true });
      return {
        // Durable like the others: resolve once the commit holding this put is flushed, not merely committed.
        put: (k, v) => db.put(k, v).flushed,
        async bulk(entries) {
          for (let i = 0; i < entries.length; i += BULK_CHUNK) {
            db.transactionSync(() => {
              for (let j = i; j < Math.min(entries.length, i + BULK_CHUNK); j++) db.putSync(entries[j][0], entries[j][1]);
            });
          }
        },
        get: (k) => db.get(k),
        async list() {
          let n = 0;
          for (const { value } of db.getRange()) n += value.length > 0 ? 1 : 1;
          return n;
        },
        close: () => db.close(),
      };
    },
  },
  level: {
    label: 'classic-level',
    durable: 'put(k, v, { sync: true }); LevelDB groups concurrent writers into one log write + fsync',
    bulk: 'batch() of 1,000 puts without sync, the last one with { sync: true }',
    async open(dir) {
      const db = new ClassicLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
      await db.open();
      return {
        put: (k, v) => db.put(k, v, { sync: true }),
        async bulk(entries) {
          for (let i = 0; i < entries.length; i += BULK_CHUNK) {
            const ops = entries.slice(i, i + BULK_CHUNK).map(([k, v]) => ({ type: 'put', key: k, value: v }));
            await db.batch(ops, { sync: i + BULK_CHUNK >= entries.length });
          }
        },
        get: (k) => db.get(k),
        async list() {
          let n = 0;
          for await (const [, v] of db.iterator()) n += v.length > 0 ? 1 : 1;
          return n;
        },
        close: () => db.close(),
      };
    },
  },
  sqlite: {
    label: 'better-sqlite3',
    durable: 'WAL mode, synchronous=FULL, one autocommit INSERT OR REPLACE per write (synchronous API: writers run one at a time)',
    bulk: 'WAL mode, one transaction per 1,000 INSERTs (each commit durable)',
    async open(dir) {
      const db = new Database(path.join(dir, 'db.sqlite'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID');
      const insert = db.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
      const select = db.prepare('SELECT v FROM kv WHERE k = ?').pluck();
      const insertMany = db.transaction((rows) => {
        for (const [k, v] of rows) insert.run(k, v);
      });
      return {
        sequential: true,
        put: (k, v) => void insert.run(k, v),
        async bulk(entries) {
          for (let i = 0; i < entries.length; i += BULK_CHUNK) insertMany(entries.slice(i, i + BULK_CHUNK));
        },
        get: (k) => select.get(k),
        async list() {
          let n = 0;
          for (const row of db.prepare('SELECT k, length(v) AS n FROM kv ORDER BY k').iterate()) n += row.n > 0 ? 1 : 1;
          return n;
        },
        close: async () => db.close(),
      };
    },
  },
};
const STORE_NAMES = ['vde', 'lmdb', 'level', 'sqlite'];

// ─── workloads ─────────────────────────────────────────────────────────────────────────────────────────────

const value1k = randomBytes(1024);

async function withStore(name, options, fn) {
  const dir = await tempDir(name);
  const store = await stores[name].open(dir, options);
  try {
    return await fn(store, dir);
  } finally {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Untimed warm-up, the same for every store, on throw-away stores in their own directories: 24,000 durable writes
 * by 64 writers (one at a time for a synchronous store), 16 durable writes of 1 MiB read back, a relaxed bulk load,
 * random gets and a full list. What it measures away is start-up cost, not steady-state work: VDE and the
 * JavaScript layers of the others are compiled by V8 while they run, and without it VDE's W2 (the first workload
 * with 64 writers) spent about half a second of one core compiling (V8 --trace-opt: 540 ms of optimizing compiles
 * during a 10,000-store W2 after a 2,000-store start). VDE's 64-writer rate was still rising after 8,000 stores (1,250-store slices: 14k, 30k, 35k, 51k/s), so
 * the warm-up is long enough to cross one automatic checkpoint (about 21,000 stores of 1 KiB). Native engines get
 * the same warm-up (their JavaScript bindings, their caches for a new file).
 */
async function warmUp(name) {
  const n = COUNTS.warmWrites;
  await withStore(name, {}, async (s) => {
    await concurrent(n, s.sequential ? 1 : WRITERS, (i) => s.put(key('warm/', i), value1k));
  });
  const m = COUNTS.warmBulk;
  const values = randomBytes(m * 100);
  const entries = Array.from({ length: m }, (_, i) => [key('warm-bulk/', i), values.subarray(i * 100, i * 100 + 100)]);
  // A few large durable writes too: the first ones in a process change the shapes V8 has seen in the store's code,
  // and without them the workload after L1 ran at about half speed while V8 recompiled it (VDE's 64-writer W2 right
  // after L1: 17.5k-20k vs 36k-42k stores/s; --trace-deopt showed "wrong map" deopts in store and the B-tree).
  const bigs = Array.from({ length: 16 }, () => randomBytes(1 << 20));
  await withStore(name, {}, async (s) => {
    await concurrent(bigs.length, s.sequential ? 1 : WRITERS, (i) => s.put(key('warm-big/', i), bigs[i]));
    for (let i = 0; i < bigs.length; i++) await s.get(key('warm-big/', i));
  });
  await withStore(name, { durable: false }, async (s) => {
    await s.bulk(entries);
    const random = prng(7);
    if (name === 'vde' || name === 'level') {
      await concurrent(m, WRITERS, () => s.get(entries[Math.floor(random() * m)][0]));
    } else {
      for (let i = 0; i < m; i++) s.get(entries[Math.floor(random() * m)][0]);
    }
    await s.list();
  });
}

/**
 * W1, measured in 10 slices alternating with slices of the raw 1 KiB write+fdatasync loop (same code as the raw
 * baseline), so that each store's W1 is compared with the raw loop under the same disk conditions: the disks of
 * shared machines change speed several times over within a run.
 */
async function w1(name) {
  return withStore(name, {}, async (s, dir) => {
    const n = COUNTS.w1;
    const slices = 10;
    const per = Math.max(1, Math.floor(n / slices));
    const fd = fs.openSync(path.join(dir, 'raw-alongside.bin'), 'w');
    // For information only (the target uses the synchronous loop): the same loop through node:fs/promises, i.e.
    // what a writer that must not block the event loop can do at best (each call a round trip to libuv's pool).
    const fh = await fsp.open(path.join(dir, 'raw-async-alongside.bin'), 'w');
    let ms = 0;
    let rawMs = 0;
    let asyncMs = 0;
    let done = 0;
    try {
      for (let sl = 0; sl < slices; sl++) {
        const t0 = performance.now();
        for (let i = 0; i < per; i++) await s.put(key('w1/', done + i), value1k);
        ms += performance.now() - t0;
        const t1 = performance.now();
        for (let i = 0; i < per; i++) {
          fs.writeSync(fd, value1k, 0, 1024, (done + i) * 1024);
          fs.fdatasyncSync(fd);
        }
        rawMs += performance.now() - t1;
        const t2 = performance.now();
        for (let i = 0; i < per; i++) {
          await fh.write(value1k, 0, 1024, (done + i) * 1024);
          await fh.datasync();
        }
        asyncMs += performance.now() - t2;
        done += per;
      }
    } finally {
      fs.closeSync(fd);
      await fh.close();
    }
    return {
      ops: done,
      ms,
      opsPerSec: (done * 1000) / ms,
      rawAlongside: { ops: done, ms: rawMs, opsPerSec: (done * 1000) / rawMs },
      rawAsyncAlongside: { ops: done, ms: asyncMs, opsPerSec: (done * 1000) / asyncMs },
    };
  });
}

async function w2(name, stripeCount = 64, count = undefined) {
  return withStore(name, { stripeCount }, async (s) => {
    const n = count ?? (s.sequential ? COUNTS.w2Sequential : COUNTS.w2);
    const { ms } = await timed(() => concurrent(n, WRITERS, (i) => s.put(key('w2/', i), value1k)));
    return { ops: n, ms, opsPerSec: (n * 1000) / ms, stats: s.engine ? statsOf(s.engine) : undefined };
  });
}

function statsOf(vde) {
  const st = vde.stats();
  return { walRecords: st.wal.records, walSyncs: st.wal.syncs, walInlineBatches: st.wal.inlineBatches, peakHeld: st.stripes.peakHeld, contended: st.stripes.contended, containerBytes: st.containerBytes };
}

/** W3 bulk load, then R1 random gets and R2 full list over the same data. */
async function w3r1r2(name) {
  const n = COUNTS.w3;
  const entries = new Array(n);
  const values = randomBytes(n * 100);
  for (let i = 0; i < n; i++) entries[i] = [key('w3/', i), values.subarray(i * 100, i * 100 + 100)];
  return withStore(name, { durable: false }, async (s, dir) => {
    const w3 = await timed(() => s.bulk(entries));
    const random = prng(42);
    const picks = Array.from({ length: COUNTS.r1 }, () => entries[Math.floor(random() * n)][0]);
    let bad = 0;
    const r1 = await timed(async () => {
      if (name === 'vde' || name === 'level') {
        await concurrent(picks.length, WRITERS, async (i) => {
          const v = await s.get(picks[i]);
          if (!v || v.length !== 100) bad++;
        });
      } else {
        for (const k of picks) {
          const v = s.get(k);
          if (!v || v.length !== 100) bad++;
        }
      }
    });
    if (bad > 0) throw new Error(`${name}: ${bad} gets returned a wrong value`);
    const r2 = await timed(() => s.list());
    if (r2.result !== n) throw new Error(`${name}: list returned ${r2.result} of ${n}`);
    const disk = await dirBytes(dir);
    return {
      w3: { ops: n, ms: w3.ms, opsPerSec: (n * 1000) / w3.ms },
      r1: { ops: picks.length, ms: r1.ms, opsPerSec: (picks.length * 1000) / r1.ms },
      r2: { ops: n, ms: r2.ms, opsPerSec: (n * 1000) / r2.ms },
      diskBytes: disk.total,
      diskAllocatedBytes: disk.allocated,
    };
  });
}

/** L1: 64 objects of 1 MiB written durably by 64 writers, then read back. Rates in MiB/s. */
async function l1(name) {
  const n = COUNTS.l1;
  const big = Array.from({ length: n }, () => randomBytes(1 << 20));
  return withStore(name, {}, async (s, dir) => {
    // The raw sequential loop runs right before and right after the write phase (same disk conditions); the
    // L1 target compares with the mean of the two.
    const before = rawSequential(dir, n);
    const write = await timed(() => concurrent(n, WRITERS, (i) => s.put(key('l1/', i), big[i])));
    const after = rawSequential(dir, n);
    let bad = 0;
    const read = await timed(() =>
      concurrent(n, s.sequential ? 1 : WRITERS, async (i) => {
        const v = await s.get(key('l1/', i));
        if (!v || Buffer.compare(Buffer.from(v.buffer, v.byteOffset, v.byteLength), big[i]) !== 0) bad++;
      }),
    );
    if (bad > 0) throw new Error(`${name}: ${bad} large objects read back wrong`);
    const rawMs = (before + after) / 2;
    return {
      write: { ops: n, ms: write.ms, mibPerSec: (n * 1000) / write.ms },
      read: { ops: n, ms: read.ms, mibPerSec: (n * 1000) / read.ms },
      rawAlongside: { mib: n, ms: rawMs, mibPerSec: (n * 1000) / rawMs },
    };
  });
}

/** Milliseconds to write `mib` MiB sequentially in 1 MiB writes and fdatasync once (a fresh file in `dir`). */
function rawSequential(dir, mib) {
  const file = path.join(dir, 'raw-seq-alongside.bin');
  const chunk = randomBytes(1 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    const t0 = performance.now();
    for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk, 0, chunk.length, i * chunk.length);
    fs.fdatasyncSync(fd);
    return performance.now() - t0;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

/**
 * S: W2 on two engines side by side, one with 64 stripes and one with 1, in 8 alternating slices each, so both
 * see the same disk conditions.
 */
async function stripesSpeedup() {
  const slices = 8;
  const per = Math.max(1, Math.floor(COUNTS.s / slices));
  const dirA = await tempDir('s64');
  const dirB = await tempDir('s1');
  const a = await stores.vde.open(dirA, { stripeCount: 64 });
  const b = await stores.vde.open(dirB, { stripeCount: 1 });
  try {
    const ms = { a: 0, b: 0 };
    for (let sl = 0; sl < slices; sl++) {
      for (const [which, st] of sl % 2 === 0 ? [['a', a], ['b', b]] : [['b', b], ['a', a]]) {
        const base = sl * per;
        const t = await timed(() => concurrent(per, WRITERS, (i) => st.put(key('s/', base + i), value1k)));
        ms[which] += t.ms;
      }
    }
    const ops = slices * per;
    const striped = { ops, ms: ms.a, opsPerSec: (ops * 1000) / ms.a, stats: statsOf(a.engine) };
    const single = { ops, ms: ms.b, opsPerSec: (ops * 1000) / ms.b, stats: statsOf(b.engine) };
    return { ops, striped, single, speedup: striped.opsPerSec / single.opsPerSec };
  } finally {
    await a.close();
    await b.close();
    await fsp.rm(dirA, { recursive: true, force: true });
    await fsp.rm(dirB, { recursive: true, force: true });
  }
}

/** Raw baselines: a 1 KiB write + fdatasync loop, and sequential write bandwidth (1 MiB writes, one fdatasync). */
async function raw() {
  const dir = await tempDir('raw');
  try {
    const file = path.join(dir, 'raw.bin');
    const n = COUNTS.raw;
    const fd = fs.openSync(file, 'w');
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      fs.writeSync(fd, value1k, 0, 1024, i * 1024);
      fs.fdatasyncSync(fd);
    }
    const syncMs = performance.now() - t0;
    fs.closeSync(fd);
    const chunk = randomBytes(1 << 20);
    const fd2 = fs.openSync(path.join(dir, 'seq.bin'), 'w');
    const t1 = performance.now();
    for (let off = 0; off < COUNTS.rawSeqBytes; off += chunk.length) fs.writeSync(fd2, chunk, 0, chunk.length, off);
    fs.fdatasyncSync(fd2);
    const seqMs = performance.now() - t1;
    fs.closeSync(fd2);
    return {
      datasync: { ops: n, ms: syncMs, opsPerSec: (n * 1000) / syncMs },
      sequential: { bytes: COUNTS.rawSeqBytes, ms: seqMs, mibPerSec: (COUNTS.rawSeqBytes / (1 << 20)) * (1000 / seqMs) },
    };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

// ─── report ───────────────────────────────────────────────────────────────────────────────────────────────

function printTable(rows) {
  const header = ['workload', 'unit', 'VDE', 'lmdb', 'classic-level', 'sqlite', 'VDE÷lmdb', 'VDE÷level', 'VDE÷sqlite'];
  const body = rows.map((r) => [
    r.name,
    r.unit,
    ...STORE_NAMES.map((s) => fmt(r.values[s])),
    ...['lmdb', 'level', 'sqlite'].map((s) => (r.values[s] == null || r.values.vde == null ? '-' : `${(r.values.vde / r.values[s]).toFixed(2)}×`)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

function escapeXml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Grouped bars: per workload, each store's rate relative to the best store in that workload (labels show rates). */
function chartSvg(rows, meta) {
  const colors = { vde: '#2563eb', lmdb: '#16a34a', level: '#d97706', sqlite: '#9333ea' };
  const labels = { vde: 'VDE', lmdb: 'lmdb', level: 'classic-level', sqlite: 'better-sqlite3' };
  const groupH = 4 * 18 + 22;
  const left = 150;
  const barMax = 520;
  const top = 56;
  const height = top + rows.length * groupH + 40;
  const width = left + barMax + 130;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">VDE vs lmdb, classic-level, better-sqlite3 (longer bar = faster; relative to the best per workload)</text>`,
    `<text x="12" y="40" fill="#555">${escapeXml(meta)}</text>`,
  ];
  rows.forEach((r, gi) => {
    const y0 = top + gi * groupH;
    const best = Math.max(0, ...STORE_NAMES.map((s) => r.values[s] ?? 0));
    parts.push(`<text x="12" y="${y0 + 14}" font-weight="bold">${escapeXml(r.name)}</text>`);
    parts.push(`<text x="12" y="${y0 + 30}" fill="#555">${escapeXml(r.unit)}</text>`);
    STORE_NAMES.forEach((s, i) => {
      const v = r.values[s];
      const y = y0 + i * 18;
      if (v == null) {
        parts.push(`<text x="${left}" y="${y + 13}" fill="#b91c1c">${escapeXml(`${labels[s]}: failed`)}</text>`);
        return;
      }
      const w = best > 0 ? Math.max(1, (v / best) * barMax) : 1;
      parts.push(`<rect x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="14" fill="${colors[s]}"/>`);
      parts.push(`<text x="${left + w + 6}" y="${y + 13}">${escapeXml(`${labels[s]} ${fmt(v)}`)}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
  };
}

// ─── main: the comparison ─────────────────────────────────────────────────────────────────────────────────

async function comparison() {
  const m = machine();
  console.log(`VDE comparison benchmark${QUICK ? ' (--quick: small counts, numbers not comparable)' : ''}`);
  console.log(`${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, Node ${m.node}, ${m.platform}, ${m.date}\n`);
  const only = argv.only?.split(',');
  const names = only ? STORE_NAMES.filter((n) => only.includes(n)) : STORE_NAMES;
  const results = { machine: m, counts: COUNTS, stores: {}, raw: undefined, s: undefined };

  process.stdout.write('raw baselines … ');
  results.raw = await raw();
  console.log(`write+fdatasync ${fmt(results.raw.datasync.opsPerSec)}/s, sequential ${fmt(results.raw.sequential.mibPerSec)} MiB/s`);

  for (const name of names) {
    process.stdout.write(`${stores[name].label}: warm-up, W1 … `);
    const r = { errors: {} };
    // A workload that throws is recorded as failed (with its error) and the run goes on: a benchmark must not
    // hide a failure, and one failing store must not hide the others' numbers.
    const attempt = async (what, fn) => {
      try {
        return await fn();
      } catch (err) {
        r.errors[what] = `${err?.code ?? 'Error'}: ${err?.message ?? String(err)}`;
        process.stdout.write(`[${what} FAILED: ${r.errors[what]}] `);
        return undefined;
      }
    };
    await attempt('warm-up', () => warmUp(name));
    r.w1 = await attempt('W1', () => w1(name));
    process.stdout.write(`${fmt(r.w1?.opsPerSec)}/s · W2 … `);
    r.w2 = await attempt('W2', () => w2(name));
    process.stdout.write(`${fmt(r.w2?.opsPerSec)}/s · W3/R1/R2 … `);
    const bulk = await attempt('W3/R1/R2', () => w3r1r2(name));
    if (bulk) Object.assign(r, { w3: bulk.w3, r1: bulk.r1, r2: bulk.r2, w3DiskBytes: bulk.diskBytes, w3DiskAllocatedBytes: bulk.diskAllocatedBytes });
    process.stdout.write(`${fmt(r.w3?.opsPerSec)}/s, ${fmt(r.r1?.opsPerSec)}/s, ${fmt(r.r2?.opsPerSec)}/s · L1 … `);
    r.l1 = await attempt('L1', () => l1(name));
    console.log(`write ${fmt(r.l1?.write.mibPerSec)} MiB/s, read ${fmt(r.l1?.read.mibPerSec)} MiB/s`);
    results.stores[name] = r;
  }

  if (names.includes('vde')) {
    process.stdout.write('S: VDE W2 with 64 stripes vs 1 … ');
    try {
      results.s = await stripesSpeedup();
      const { striped, single } = results.s;
      console.log(`${fmt(striped.opsPerSec)}/s vs ${fmt(single.opsPerSec)}/s = ${results.s.speedup.toFixed(1)}×`);
    } catch (err) {
      results.sError = `${err?.code ?? 'Error'}: ${err?.message ?? String(err)}`;
      console.log(`FAILED: ${results.sError}`);
    }
  }

  /** null marks a workload that failed (printed as "failed"). */
  const val = (pick) => Object.fromEntries(names.map((n) => [n, pick(results.stores[n]) ?? null]));
  const rows = [
    { name: 'W1 durable, 1 writer, 1 KiB', unit: 'writes/s', values: val((r) => r.w1?.opsPerSec) },
    { name: 'W2 durable, 64 writers, 1 KiB', unit: 'writes/s', values: val((r) => r.w2?.opsPerSec) },
    { name: 'W3 relaxed bulk, 100 B', unit: 'writes/s', values: val((r) => r.w3?.opsPerSec) },
    { name: 'R1 random get, 100 B', unit: 'gets/s', values: val((r) => r.r1?.opsPerSec) },
    { name: 'R2 full list', unit: 'entries/s', values: val((r) => r.r2?.opsPerSec) },
    { name: 'L1 write 1 MiB, durable', unit: 'MiB/s', values: val((r) => r.l1?.write.mibPerSec) },
    { name: 'L1 read 1 MiB', unit: 'MiB/s', values: val((r) => r.l1?.read.mibPerSec) },
  ];
  console.log('');
  printTable(rows);
  console.log(`\nbaselines: 1 KiB write+fdatasync loop ${fmt(results.raw.datasync.opsPerSec)}/s · sequential write ${fmt(results.raw.sequential.mibPerSec)} MiB/s`);
  console.log(`W1 beside the raw loop (alternating slices): ${names.map((n) => `${stores[n].label} ${fmt(results.stores[n].w1?.opsPerSec)}/s vs raw ${fmt(results.stores[n].w1?.rawAlongside.opsPerSec)}/s`).join(' · ')}`);
  console.log(
    `W1 beside the same loop through fs/promises (information; the target uses the synchronous loop): ${names
      .map((n) => `${stores[n].label} ${fmt(results.stores[n].w1?.opsPerSec)}/s vs ${fmt(results.stores[n].w1?.rawAsyncAlongside.opsPerSec)}/s`)
      .join(' · ')}`,
  );
  console.log(`L1 write beside raw sequential (run just before and after): ${names.map((n) => `${stores[n].label} ${fmt(results.stores[n].l1?.write.mibPerSec)} vs raw ${fmt(results.stores[n].l1?.rawAlongside.mibPerSec)} MiB/s`).join(' · ')}`);
  if (results.s) console.log(`S: VDE W2 (${fmt(results.s.ops)} stores each, 8 alternating slices) 64 stripes ${fmt(results.s.striped.opsPerSec)}/s vs 1 stripe ${fmt(results.s.single.opsPerSec)}/s`);
  if (names.includes('vde')) {
    const disk = (r) => (r.w3DiskBytes === undefined ? 'failed' : `${fmtBytes(r.w3DiskBytes)} / ${fmtBytes(r.w3DiskAllocatedBytes)}`);
    console.log('disk after W3 (apparent / allocated): ' + names.map((n) => `${stores[n].label} ${disk(results.stores[n])}`).join(' · '));
  }

  // Targets, judged honestly.
  const targets = [];
  if (results.stores.vde) {
    const v = results.stores.vde;
    const others = names.filter((n) => n !== 'vde');
    const bestOf = (pick) => Math.max(...others.map((n) => pick(results.stores[n]) ?? 0));
    // A failed VDE workload is a missed target (actual NaN).
    const check = (name, actual, goal, text) => targets.push({ name, actual, goal, met: actual >= goal, text });
    if (results.stores.lmdb) check('W2 ≥ 2× lmdb', v.w2?.opsPerSec / results.stores.lmdb.w2?.opsPerSec, 2, 'VDE ÷ lmdb');
    check('W1 ≥ 0.9× raw write+datasync', v.w1?.opsPerSec / v.w1?.rawAlongside.opsPerSec, 0.9, 'VDE ÷ raw loop in alternating slices');

    if (others.length > 0) {
      check('W3 ≥ best of the three', v.w3?.opsPerSec / bestOf((r) => r.w3?.opsPerSec), 1, 'VDE ÷ best');
      check('R1 ≥ best of the three', v.r1?.opsPerSec / bestOf((r) => r.r1?.opsPerSec), 1, 'VDE ÷ best');
      check('R2 ≥ best of the three', v.r2?.opsPerSec / bestOf((r) => r.r2?.opsPerSec), 1, 'VDE ÷ best');
    }
    check('L1 write ≥ 0.8× raw sequential', v.l1?.write.mibPerSec / v.l1?.rawAlongside.mibPerSec, 0.8, 'VDE ÷ raw sequential run just before and after');
    check('S ≥ 10×', results.s?.speedup, 10, '64 ÷ 1 stripe');
    console.log('\ntargets:');
    for (const t of targets) {
      const actual = Number.isFinite(t.actual) ? `${t.actual.toFixed(2)}×` : 'n/a (the workload failed)';
      console.log(`  ${t.met ? 'met    ' : 'MISSED '} ${t.name}: ${actual} (${t.text})`);
    }
    if (v.w1?.rawAsyncAlongside) {
      const r = v.w1.opsPerSec / v.w1.rawAsyncAlongside.opsPerSec;
      console.log(`  (information, not a target) W1 ÷ the same loop through fs/promises: ${r.toFixed(2)}×`);
    }
    for (const n of names) for (const [what, e] of Object.entries(results.stores[n].errors)) console.log(`  ${stores[n].label} ${what} failed: ${e}`);
    if (results.sError) console.log(`  S failed: ${results.sError}`);
  }
  results.rows = rows;
  results.targets = targets;
  results.fairness = Object.fromEntries(names.map((n) => [n, { durable: stores[n].durable, bulk: stores[n].bulk }]));
  await fsp.mkdir(resultsDir, { recursive: true });
  await fsp.writeFile(path.join(resultsDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const meta = `${m.cpus} CPUs, ${m.memGiB} GiB, Node ${m.node}, ${m.date.slice(0, 10)}${QUICK ? ' (--quick)' : ''}`;
  await fsp.writeFile(path.join(resultsDir, 'chart.svg'), chartSvg(rows, meta));
  console.log(`\nwrote ${path.join(resultsDir, 'results.json')} and chart.svg`);
}

// ─── --growth: cost growth of VDE ─────────────────────────────────────────────────────────────────────────

async function growth() {
  const maxKeys = argv['max-keys'] === undefined ? 10_000_000 : Number(argv['max-keys']);
  if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new Error('--max-keys must be a positive integer');
  const steps = [100_000, 1_000_000, 10_000_000].filter((s) => s <= maxKeys);
  if (steps.length === 0 || steps[steps.length - 1] !== maxKeys) steps.push(maxKeys);
  const m = machine();
  console.log(`VDE cost growth: W3 (relaxed bulk, 100 B values) then R1 (100,000 random gets) at ${steps.map((s) => s.toLocaleString('en-US')).join(', ')} keys`);
  console.log(`${m.cpus} CPUs, ${m.memGiB} GiB, Node ${m.node}, ${m.date}\n`);
  const dir = await tempDir('growth');
  const file = path.join(dir, 'c.vde');
  const rows = [];
  let failure;
  try {
    const vde = await VirtualDiskEngine.open(file, { durability: 'relaxed' });
    try {
      const values = randomBytes(BULK_CHUNK * 100);
      let have = 0;
      console.log('keys          W3 writes/s   R1 gets/s   RSS        container (apparent / allocated)   payload     space amp.');
      for (const target of steps) {
        try {
          const t0 = performance.now();
          for (let i = have; i < target; i += BULK_CHUNK) {
            const ops = [];
            for (let j = i; j < Math.min(target, i + BULK_CHUNK); j++) ops.push({ type: 'put', key: key('g/', j), data: values.subarray((j % BULK_CHUNK) * 100, (j % BULK_CHUNK) * 100 + 100) });
            await vde.batch(ops);
          }
          await vde.checkpoint();
          const w3Ms = performance.now() - t0;
          const added = target - have;
          have = target;
          const random = prng(target);
          const picks = Array.from({ length: 100_000 }, () => key('g/', Math.floor(random() * have)));
          const r1 = await timed(() => concurrent(picks.length, WRITERS, (i) => vde.retrieve(picks[i])));
          const st = await fsp.stat(file);
          const payload = have * (100 + key('g/', 0).length);
          const row = {
            keys: have,
            w3OpsPerSec: (added * 1000) / w3Ms,
            r1OpsPerSec: (picks.length * 1000) / r1.ms,
            rssBytes: rss(),
            containerBytes: st.size,
            containerAllocatedBytes: st.blocks * 512,
            payloadBytes: payload,
            spaceAmplification: st.size / payload,
            allocatedAmplification: (st.blocks * 512) / payload,
          };
          rows.push(row);
          console.log(
            `${have.toLocaleString('en-US').padEnd(12)}  ${fmt(row.w3OpsPerSec).padStart(11)}  ${fmt(row.r1OpsPerSec).padStart(10)}   ${fmtBytes(row.rssBytes).padEnd(9)}  ` +
              `${`${fmtBytes(st.size)} / ${fmtBytes(row.containerAllocatedBytes)}`.padEnd(33)}  ${fmtBytes(payload).padEnd(10)}  ${row.spaceAmplification.toFixed(2)} (allocated ${row.allocatedAmplification.toFixed(2)})`,
          );
        } catch (err) {
          // Recorded and reported, never hidden; later steps would build on a broken container.
          failure = `${err?.code ?? 'Error'}: ${err?.message ?? String(err)}`;
          console.log(`${target.toLocaleString('en-US').padEnd(12)}  FAILED: ${failure}`);
          break;
        }
      }
    } finally {
      await vde.close().catch((err) => console.log(`close failed: ${err?.code ?? ''} ${err?.message ?? String(err)}`));
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  await fsp.mkdir(resultsDir, { recursive: true });
  await fsp.writeFile(path.join(resultsDir, 'growth.json'), `${JSON.stringify({ machine: m, rows, failure }, null, 2)}\n`);
  if (failure) process.exitCode = 1;
  console.log(`\nwrote ${path.join(resultsDir, 'growth.json')} (payload = key + value bytes)`);
}

await (argv.growth ? growth() : comparison());
