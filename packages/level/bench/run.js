// Benchmark of VdeLevel on a real file (default durability 'sync': every write is fsynced before it resolves).
// Build first: npx tsc -b packages/level. Run: npx pnpm@10.34.9 --filter @vde/level bench
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { VdeLevel } from '../dist/index.js';

const dir = await fs.mkdtemp(path.join(process.env.VDE_BENCH_DIR ?? os.tmpdir(), 'vde-level-bench-'));
const N = Number(process.env.VDE_BENCH_N ?? 5_000);
const value = Buffer.alloc(1024, 7);
const rows = [];

function key(i) {
  return `key-${String(i).padStart(8, '0')}`;
}

async function measure(name, ops, fn) {
  const start = performance.now();
  await fn();
  const ms = performance.now() - start;
  rows.push({ name, ops, ms, perSec: (ops / ms) * 1000 });
}

async function inFlight(total, concurrency, fn) {
  let next = 0;
  async function worker() {
    while (next < total) await fn(next++);
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
}

try {
  const db = new VdeLevel(path.join(dir, 'bench.vde'), { valueEncoding: 'buffer' });
  await db.open();

  await measure('put, 1 in flight (1 KiB)', 1_000, () => inFlight(1_000, 1, (i) => db.put(key(i), value)));
  await measure('put, 64 in flight (1 KiB)', N, () => inFlight(N, 64, (i) => db.put(key(i), value)));
  await measure('batch of 100 puts, 1 in flight', N, () =>
    inFlight(N / 100, 1, (b) => db.batch(Array.from({ length: 100 }, (_, j) => ({ type: 'put', key: key(b * 100 + j), value })))),
  );
  await measure('get, 64 in flight', N, () => inFlight(N, 64, (i) => db.get(key((i * 7919) % N))));
  await measure(`iterate ${N.toLocaleString('en-US')} entries (nextv 1000)`, N, async () => {
    const it = db.iterator();
    let n = 0;
    for (let batch = await it.nextv(1000); batch.length > 0; batch = await it.nextv(1000)) n += batch.length;
    await it.close();
    if (n !== N) throw new Error(`iterated ${n}`);
  });
  await measure('keys() of 100 after each put (snapshot per iterator)', 200, () =>
    inFlight(200, 1, async (i) => {
      await db.put(key(i), value);
      await db.keys({ gte: key(i), limit: 100 }).all();
    }),
  );
  await measure('del, 64 in flight', N, () => inFlight(N, 64, (i) => db.del(key(i))));
  await db.close();
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}

console.log(`VdeLevel on ${os.type()} ${os.release()}, ${os.cpus().length} cores, Node ${process.version}, durability 'sync'`);
console.log('');
console.log('| operation | ops | ms | ops/s |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.name} | ${r.ops.toLocaleString('en-US')} | ${r.ms.toFixed(0)} | ${Math.round(r.perSec).toLocaleString('en-US')} |`);
