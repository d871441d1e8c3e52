/**
 * The packed package installs and loads on a machine with no compilers: `npm pack`, then
 * `npm install <tarball>` into an empty directory with a PATH holding only node and npm.
 * With a prebuild in the tarball, require() loads it and `psa info` reports it; without one
 * the install still succeeds and the js backend computes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const builtAddon = join(root, 'build', 'Release', 'psa_attention.node');
const haveAddon = existsSync(builtAddon);

/** A bin directory with node, npm and sh (npm runs scripts through it) only: no cmake, nvcc, g++ or cc. */
function bareBin(dir: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const npmCli = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
  symlinkSync(npmCli, join(bin, 'npm'));
  return bin;
}

/** Pack the package; with `prebuild`, the tarball also carries prebuilds/<platform>-<arch>/node.napi.node. */
function pack(work: string, prebuild: boolean): string {
  const stage = join(work, 'stage');
  mkdirSync(stage);
  const tgz = execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop()!;
  execFileSync('tar', ['xzf', join(work, tgz), '-C', stage, '--strip-components=1']);
  rmSync(join(work, tgz));
  rmSync(join(stage, 'prebuilds'), { recursive: true, force: true });
  if (prebuild) {
    const dir = join(stage, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(dir, { recursive: true });
    copyFileSync(builtAddon, join(dir, 'node.napi.node'));
  }
  const out = execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: stage, encoding: 'utf8' }).trim().split('\n').pop()!;
  return join(work, out);
}

function installBare(work: string, tarball: string) {
  const app = join(work, 'app');
  mkdirSync(app);
  const env = { HOME: process.env.HOME ?? work, PATH: bareBin(work), npm_config_cache: process.env.npm_config_cache ?? join(process.env.HOME ?? work, '.npm') };
  const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, env, encoding: 'utf8' });
  const run = (script: string) => spawnSync('node', ['-e', script], { cwd: app, env, encoding: 'utf8' });
  const psa = (...args: string[]) => spawnSync('node', [join(app, 'node_modules', 'psa-attention', 'bin', 'psa.js'), ...args], { cwd: app, env, encoding: 'utf8' });
  return { app, install, run, psa };
}

const ATTENTION = `
  const { attention } = require('psa-attention');
  const n = 1 * 2 * 8 * 4, q = new Float32Array(n).fill(0.5);
  attention(q, q, q, { shape: { batch: 1, heads: 2, seqQ: 8, headDim: 4 }, causal: true })
    .then((r) => console.log(JSON.stringify({ backend: r.backend, first: r.output[0] })));
`;

describe('packed tarball on a machine without compilers', () => {
  let work: string;
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'psa-pack-'));
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  (haveAddon ? test : test.skip)('with a prebuild: require() loads it and psa info reports it', () => {
    const { install, run, psa } = installBare(work, pack(work, true));
    expect(install.status).toBe(0);
    const loaded = run(`const { info } = require('psa-attention'); console.log(JSON.stringify(info().native))`);
    expect(loaded.status).toBe(0);
    const native = JSON.parse(loaded.stdout);
    expect(native.loaded).toBe(true);
    expect(native.path).toContain(join('prebuilds', `${process.platform}-${process.arch}`));
    const infoText = psa('info');
    expect(infoText.status).toBe(0);
    expect(infoText.stdout).toMatch(/native addon: .*node\.napi\.node/);
    expect(infoText.stdout).toMatch(/cuda\s+no\s+\S/);
    const computed = run(ATTENTION);
    expect(computed.status).toBe(0);
    expect(JSON.parse(computed.stdout)).toEqual({ backend: 'cpu', first: 0.5 });
  }, 240_000);

  test('without a prebuild: the install succeeds and the js backend works', () => {
    const { install, run, psa } = installBare(work, pack(work, false));
    expect(install.status).toBe(0);
    expect(readdirSync(join(work, 'app', 'node_modules', 'psa-attention'))).not.toContain('build');
    const infoText = psa('info');
    expect(infoText.status).toBe(0);
    expect(infoText.stdout).toMatch(/native addon: none: no native addon/);
    expect(infoText.stdout).toMatch(/npx psa build/);
    const computed = run(ATTENTION);
    expect(computed.status).toBe(0);
    expect(JSON.parse(computed.stdout)).toEqual({ backend: 'js', first: 0.5 });
  }, 240_000);

  if (!haveAddon) {
    test.skip(`with a prebuild: skipped because ${builtAddon} was not built (npm install builds it where cmake and g++ exist)`, () => {});
  }
});
