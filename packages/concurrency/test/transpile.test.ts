/**
 * `await using` as the TypeScript compiler emits it (target ES2022, lib esnext.disposable: downlevelled to the
 * `__addDisposableResource` / `__disposeResources` helpers), run on this Node. Vitest compiles the other tests with
 * esbuild; this one proves the tsc output works too.
 */
import vm from 'node:vm';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { AsyncRwLock, StripedWriteLock } from '@vde/concurrency';

const snippet = `
import type { AsyncRwLock, StripedWriteLock } from '@vde/concurrency';

export async function store(lock: StripedWriteLock, gate: AsyncRwLock, log: string[]): Promise<void> {
  {
    await using shared = await gate.shared();
    await using region = await lock.acquire('object/1');
    log.push(\`inside: \${shared.mode} \${region.stripes.length} held=\${lock.stats().held}\`);
  }
  log.push(\`after: held=\${lock.stats().held} readers=\${gate.stats().sharedHolders}\`);
  try {
    using region = await lock.acquireMany(['a', 'b']);
    log.push(\`many: \${region.stripes.join(',')}\`);
    throw new Error('boom');
  } catch (error) {
    log.push(\`caught: \${(error as Error).message} held=\${lock.stats().held}\`);
  }
}
`;

describe('tsc output of `await using`', () => {
  it('transpiles to ES2022 helpers and runs on Node', async () => {
    const out = ts.transpileModule(snippet, {
      compilerOptions: {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
        strict: true,
      },
      reportDiagnostics: true,
    });
    expect(out.diagnostics ?? []).toEqual([]);
    expect(out.outputText).toContain('__addDisposableResource');
    expect(out.outputText).not.toMatch(/\bawait using\b/);

    // Run the CommonJS output in this realm (so Symbol.asyncDispose is the one @vde/concurrency uses).
    const factory = vm.runInThisContext(`(function (exports, require) {\n${out.outputText}\n})`) as (
      exports: Record<string, unknown>,
      require: (id: string) => unknown,
    ) => void;
    const exports: Record<string, unknown> = {};
    factory(exports, (id) => {
      throw new Error(`unexpected require(${id})`);
    });
    const store = exports.store as (lock: StripedWriteLock, gate: AsyncRwLock, log: string[]) => Promise<void>;

    const lock = new StripedWriteLock(64);
    const gate = new AsyncRwLock();
    const log: string[] = [];
    await store(lock, gate, log);
    const many = [...new Set([lock.stripeOf('a'), lock.stripeOf('b')])].sort((x, y) => x - y).join(',');
    expect(log).toEqual([
      'inside: shared 1 held=1',
      'after: held=0 readers=0',
      `many: ${many}`,
      'caught: boom held=0',
    ]);
    expect(lock.stats()).toMatchObject({ held: 0, waiters: 0, acquisitions: 2 });
  });
});
