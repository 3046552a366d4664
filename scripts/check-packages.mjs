#!/usr/bin/env node
// Packs every published package the way `pnpm publish` would and checks what a user outside this repository gets.
//
//   node scripts/check-packages.mjs            tarball checks only (no network, about 15 s)
//   node scripts/check-packages.mjs --install  also installs the tarballs with plain npm into a scratch project in
//                                              the OS temp directory (abstract-level comes from the registry) and
//                                              runs: ESM import and require() of each package, a TypeScript consumer
//                                              with moduleResolution node16 and bundler against the published .d.ts,
//                                              the `vde` bin (--help, create, put, get), and the README examples
//                                              (the "Five-minute example" / "Five minutes" block of each README,
//                                              copied verbatim).
//
// Run `npx tsc -b` first: it packs whatever is in dist/. Exit status 1 on the first failing package or step, with
// every problem found listed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PNPM = ['-y', 'pnpm@10.34.9'];
const install = process.argv.includes('--install');
const keep = process.argv.includes('--keep');

const problems = [];
const fail = (pkg, msg) => problems.push(`${pkg}: ${msg}`);

const packageDirs = readdirSync(join(root, 'packages'))
  .map((d) => join(root, 'packages', d))
  .filter((d) => existsSync(join(d, 'package.json')))
  .filter((d) => JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')).private !== true);

const work = mkdtempSync(join(tmpdir(), 'vde-packages-'));
const packDir = join(work, 'tarballs');
mkdirSync(packDir);

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function walk(dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const f = join(dir, e.name);
    if (e.isDirectory()) walk(f, out);
    else out.push(f);
  }
  return out;
}

const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
const tarballs = [];

for (const dir of packageDirs) {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const name = manifest.name;
  const out = run('npx', [...PNPM, 'pack', '--pack-destination', packDir], { cwd: dir }).trim().split('\n').pop();
  const tgz = out.trim();
  tarballs.push(tgz);
  const x = join(work, 'unpacked', name.replace('/', '__'));
  mkdirSync(x, { recursive: true });
  run('tar', ['xzf', tgz, '-C', x]);
  const pkgDir = join(x, 'package');
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const files = walk(pkgDir).map((f) => relative(pkgDir, f).split('\\').join('/'));
  const has = (f) => files.includes(f);

  // The packed manifest: no workspace ranges, the usual fields.
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']) {
    for (const [dep, range] of Object.entries(pkg[field] ?? {})) {
      if (String(range).startsWith('workspace:')) fail(name, `${field}.${dep} is still "${range}" in the tarball`);
    }
  }
  if (pkg.type !== 'module') fail(name, 'package.json "type" is not "module"');
  if (typeof pkg.license !== 'string') fail(name, 'no "license" in package.json');

  // Files: README, LICENSE, the entry points; no tests, benches or build info.
  for (const f of ['README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts']) if (!has(f)) fail(name, `${f} missing from the tarball`);
  for (const f of files) {
    if (/(^|\/)(test|tests|__tests__|bench)\//.test(f) || /\.(test|spec)\.[cm]?[jt]s$/.test(f)) fail(name, `test or bench file shipped: ${f}`);
    if (f.endsWith('.tsbuildinfo')) fail(name, `build info shipped: ${f}`);
  }
  const entry = pkg.exports?.['.'];
  for (const target of [pkg.main, pkg.types, entry?.types, entry?.default, entry?.import]) {
    if (typeof target === 'string' && !has(posix.normalize(target))) fail(name, `entry ${target} is not in the tarball`);
  }
  for (const [bin, target] of Object.entries(typeof pkg.bin === 'string' ? { [name]: pkg.bin } : (pkg.bin ?? {}))) {
    const t = posix.normalize(target);
    if (!has(t)) fail(name, `bin ${bin} -> ${target} is not in the tarball`);
    else if (!readFileSync(join(pkgDir, t), 'utf8').startsWith('#!/usr/bin/env node')) fail(name, `bin ${bin} has no node shebang`);
  }

  // Every import in dist resolves: relative ones to a shipped file, bare ones to a declared dependency.
  const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
  const importRe = /(?:^|[\s;])(?:import|export)\s(?:[^'"]*?\sfrom\s)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const f of files.filter((f) => f.startsWith('dist/') && /\.(js|d\.ts)$/.test(f))) {
    const text = readFileSync(join(pkgDir, f), 'utf8');
    for (const m of text.matchAll(importRe)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) {
        const target = posix.normalize(posix.join(posix.dirname(f), spec));
        const candidates = f.endsWith('.d.ts') ? [target.replace(/\.js$/, '.d.ts'), target] : [target];
        if (!candidates.some(has)) fail(name, `${f} imports ${spec}, which is not in the tarball`);
      } else if (!builtins.has(spec)) {
        const bare = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!declared.has(bare)) fail(name, `${f} imports ${spec}, not a declared dependency`);
      }
    }
  }
  // Source maps and declaration maps point at shipped sources.
  for (const f of files.filter((f) => f.endsWith('.map'))) {
    const map = JSON.parse(readFileSync(join(pkgDir, f), 'utf8'));
    for (const s of map.sources ?? []) {
      const target = posix.normalize(posix.join(posix.dirname(f), map.sourceRoot ?? '', s));
      if (!has(target)) fail(name, `${f} points at ${s}, which is not in the tarball`);
    }
  }

  // publint and attw on the tarball (attw: ESM-only is intended, so only the esm-only profile counts).
  try {
    run('npx', ['publint', '--strict', tgz], { cwd: root });
  } catch (e) {
    fail(name, `publint: ${String(e.stdout ?? '') + String(e.stderr ?? '')}`.trim());
  }
  try {
    run('npx', ['attw', tgz, '--profile', 'esm-only', '--format', 'ascii'], { cwd: root });
  } catch (e) {
    fail(name, `attw: ${String(e.stdout ?? '') + String(e.stderr ?? '')}`.trim());
  }
  console.log(`${problems.some((p) => p.startsWith(`${name}:`)) ? 'FAIL' : 'ok  '} ${name} (${files.length} files)`);
}

/** The first fenced code block after the heading that names the five-minute example. */
function fiveMinuteBlock(readme) {
  const lines = readme.split('\n');
  const h = lines.findIndex((l) => /^##+ .*five[- ]minute|^##+ five minutes/i.test(l));
  if (h < 0) return null;
  const next = lines.findIndex((l, i) => i > h && /^##? /.test(l)); // the section ends at the next heading
  const start = lines.findIndex((l, i) => i > h && (next < 0 || i < next) && /^```(js|ts|javascript|typescript)\s*$/.test(l));
  if (start < 0) return null; // a shell transcript (the cli's tour): the vde step above covers it
  const end = lines.findIndex((l, i) => i > start && l.startsWith('```'));
  return { lang: lines[start].slice(3).trim(), code: lines.slice(start + 1, end).join('\n') + '\n' };
}

if (install && problems.length === 0) {
  const proj = join(work, 'consumer');
  mkdirSync(proj);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  const step = (what, fn) => {
    try {
      fn();
      console.log(`ok   ${what}`);
    } catch (e) {
      fail('install', `${what}: ${String(e.stdout ?? '') + String(e.stderr ?? '') || String(e)}`.trim());
      console.log(`FAIL ${what}`);
    }
  };
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  step('npm install of every tarball', () =>
    run('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', ...tarballs, '@types/node@^20'], { cwd: proj }),
  );
  const names = packageDirs.map((d) => JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')).name);
  for (const name of names) {
    step(`import('${name}')`, () => run('node', ['--input-type=module', '-e', `const m = await import('${name}'); if (Object.keys(m).length === 0) throw new Error('no exports');`], { cwd: proj }));
    step(`require('${name}')`, () => run('node', ['-e', `const m = require('${name}'); if (Object.keys(m).length === 0) throw new Error('no exports');`], { cwd: proj }));
  }
  writeFileSync(join(proj, 'consumer.mts'), names.map((n, i) => `import * as m${i} from '${n}';`).join('\n') + `\nconsole.log(${names.map((_, i) => `m${i}`).join(', ')});\n`);
  for (const [mode, module] of [['node16', 'node16'], ['bundler', 'esnext']]) {
    step(`tsc consumer (moduleResolution ${mode}, skipLibCheck off)`, () =>
      run('node', [tsc, '--noEmit', '--strict', '--target', 'es2022', '--lib', 'es2022,esnext.disposable', '--module', module, '--moduleResolution', mode, '--types', 'node', 'consumer.mts'], { cwd: proj }),
    );
  }
  const vde = join(proj, 'node_modules', '.bin', 'vde');
  if (existsSync(vde)) {
    step('vde --help, create, put, get', () => {
      if (!run(vde, ['--help'], { cwd: proj }).includes('Usage: vde')) throw new Error('vde --help printed no usage');
      run(vde, ['create', 'bin.vde'], { cwd: proj });
      run(vde, ['put', 'bin.vde', 'greeting'], { cwd: proj, input: 'hello from the bin\n', stdio: ['pipe', 'pipe', 'pipe'] });
      const got = run(vde, ['get', 'bin.vde', 'greeting'], { cwd: proj });
      if (got !== 'hello from the bin\n') throw new Error(`vde get printed ${JSON.stringify(got)}`);
    });
  }
  // README examples, verbatim. TypeScript ones are transpiled (types stripped, `await using` downlevelled) first.
  const ts = (await import(join(root, 'node_modules', 'typescript', 'lib', 'typescript.js'))).default;
  writeFileSync(join(proj, 'big.mp4'), new Uint8Array(3 << 20)); // the engine example streams a file of that name
  for (const dir of packageDirs) {
    const name = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name;
    const block = fiveMinuteBlock(readFileSync(join(dir, 'README.md'), 'utf8'));
    if (block === null) continue;
    const file = join(proj, `example-${name.split('/')[1]}.mjs`);
    const js = block.lang === 'ts' || block.lang === 'typescript'
      ? ts.transpileModule(block.code, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText
      : block.code;
    writeFileSync(file, js);
    step(`README example of ${name}`, () => run('node', [file], { cwd: proj, timeout: 120_000, maxBuffer: 64 << 20 }));
  }
}

if (keep || problems.length > 0) console.log(`\nwork directory kept: ${work}`);
else rmSync(work, { recursive: true, force: true });
if (problems.length > 0) {
  console.error(`\n${problems.length} problem(s):`);
  for (const p of problems) console.error(`- ${p}`);
  process.exit(1);
}
console.log(`\nall ${packageDirs.length} packages ok${install ? ' (installed and run)' : ''}`);
