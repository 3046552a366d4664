import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { FileBlockDevice } from '../src/index.js';

export async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'vde-blockdev-'));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/**
 * Temp paths and open devices of one test file: `closeAll` (afterEach) closes the devices opened or tracked since,
 * `removeAll` (afterAll) removes the directories.
 */
export function tracked(): {
  devices: FileBlockDevice[];
  tempDir: () => Promise<string>;
  tempPath: (name?: string) => Promise<string>;
  openTracked: (p: string, options?: Parameters<typeof FileBlockDevice.open>[1]) => Promise<FileBlockDevice>;
  closeAll: () => Promise<void>;
  removeAll: () => Promise<void>;
} {
  const dirs: string[] = [];
  const devices: FileBlockDevice[] = [];
  const tempDir = async (): Promise<string> => {
    const dir = await makeTempDir();
    dirs.push(dir);
    return dir;
  };
  return {
    devices,
    tempDir,
    tempPath: async (name = 'c.vde') => path.join(await tempDir(), name),
    openTracked: async (p, options) => {
      const dev = await FileBlockDevice.open(p, options);
      devices.push(dev);
      return dev;
    },
    closeAll: async () => {
      await Promise.all(devices.splice(0).map((d) => d.close()));
    },
    removeAll: async () => {
      await Promise.all(dirs.splice(0).map(removeDir));
    },
  };
}

/**
 * Transpiles this package's src/*.ts to plain ESM in `outDir`, so that a child process (plain `node`) can run
 * the code under test without a prior build. Returns the file URL of the transpiled index.js.
 */
export async function transpileSources(outDir: string): Promise<string> {
  const srcDir = fileURLToPath(new URL('../src/', import.meta.url));
  await mkdir(outDir, { recursive: true });
  for (const name of await readdir(srcDir)) {
    if (!name.endsWith('.ts')) continue;
    const source = await readFile(path.join(srcDir, name), 'utf8');
    const out = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: name,
    });
    await writeFile(path.join(outDir, name.replace(/\.ts$/, '.js')), out.outputText);
  }
  await writeFile(path.join(outDir, 'package.json'), '{"type":"module"}\n');
  return new URL(`file://${path.join(outDir, 'index.js')}`).href;
}

/** Fast byte comparison (vitest's deep equality is slow on megabyte arrays); shows the first difference. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): { equal: true } | { firstDiff: number; length: [number, number] } {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) {
    return { equal: true };
  }
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  return { firstDiff: i, length: [actual.length, expected.length] };
}
