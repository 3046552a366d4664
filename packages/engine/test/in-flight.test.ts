import { describe, expect, it } from 'vitest';
import { checked, memoryEngine } from './helpers.js';

// Operations in flight in one process while others change (or close) the store.
describe('operations in flight', () => {
  it('a list() iterator taken before close() ends with ERR_VDE_CLOSED once its copied leaf is used up', async () => {
    const { vde } = await memoryEngine();
    await vde.batch(Array.from({ length: 2000 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(5, '0')}`, data: 'v' })));
    const it = vde.list()[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done ? undefined : first.value.key).toBe('k00000');
    await checked(vde);
    await vde.close();
    let listed = 1;
    let code: string | undefined;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        listed++;
      }
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    // Before: it went on reading the closed engine's page cache and listed all 2,000.
    expect(code).toBe('ERR_VDE_CLOSED');
    expect(listed).toBeLessThan(2000);
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });
});
