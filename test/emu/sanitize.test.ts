/**
 * The emulated checks under ThreadSanitizer and under AddressSanitizer with
 * UndefinedBehaviorSanitizer (`npm run test:sanitize`; also part of `npm test`). Each CUDA
 * thread runs as an OS thread in these builds, so a missing __syncthreads is a data race
 * ThreadSanitizer sees. The sanitizers instrument the check programs (the model's own checks and
 * each kernel family's check against its host function: kernels, launchers, the conversion
 * path) and, under AddressSanitizer, the emulated addon itself: node is not instrumented, so
 * the runtime is preloaded into it, and the quick bad-input and in-flight cases (test/robust)
 * run against that addon, each in its own node process.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BAD_INPUT_CASES } from '../robust/bad-input.cases';
import { missingBuild, runCase, summary } from '../robust/child';
import { IN_FLIGHT_CASES } from '../robust/in-flight.cases';

const root = join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { which } = require('../../scripts/addon-build.js') as { which(name: string): string | null };
const missing = ['cmake', 'g++'].filter((t) => !which(t));

const CHECKS = ['psa_model_check', 'psa_forward_check', 'psa_select_check', 'psa_topk_check'];

const SANITIZER_ENV = {
  TSAN_OPTIONS: 'halt_on_error=1 second_deadlock_stack=1',
  // node itself leaks at exit by design: leak reports would be noise.
  ASAN_OPTIONS: 'detect_leaks=0 halt_on_error=1',
  UBSAN_OPTIONS: 'halt_on_error=1 print_stacktrace=1',
};

/** Node-API headers as cmake-js passes them (the address build also makes the addon). */
function nodeApiIncludes(): string {
  const headers = join(dirname(require.resolve('node-api-headers/package.json', { paths: [root] })), 'include');
  const addonApi = dirname(require.resolve('node-addon-api/package.json', { paths: [root] }));
  return `${headers};${addonApi}`;
}

/** Configures and builds the sanitized tree (incremental), returning its directory. */
function build(sanitizer: 'thread' | 'address'): string {
  const dir = join(root, `build-${sanitizer === 'thread' ? 'tsan' : 'asan'}`);
  const addon = sanitizer === 'address' ? ['-DPSA_ADDON=ON', `-DCMAKE_JS_INC=${nodeApiIncludes()}`, '-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION'] : ['-DPSA_ADDON=OFF'];
  const configure = spawnSync('cmake', ['-S', root, '-B', dir, '-DPSA_EMULATED=ON', ...addon, `-DPSA_SANITIZE=${sanitizer}`, '-DCMAKE_BUILD_TYPE=RelWithDebInfo'], { encoding: 'utf8' });
  if (configure.status !== 0) throw new Error(`cmake configure failed:\n${configure.stdout}\n${configure.stderr}`);
  const targets = sanitizer === 'address' ? [...CHECKS, 'psa_attention'] : CHECKS;
  const made = spawnSync('cmake', ['--build', dir, '--target', ...targets, '-j', '2'], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`build failed:\n${made.stdout.slice(-3000)}\n${made.stderr.slice(-3000)}`);
  return dir;
}

function buildAndRun(sanitizer: 'thread' | 'address') {
  const dir = build(sanitizer);
  const env = { ...process.env, ...SANITIZER_ENV };
  // --quick: the check programs leave out cases too large for one OS thread per CUDA thread.
  return CHECKS.map((name) => ({ name, run: spawnSync(join(dir, name), ['--quick'], { encoding: 'utf8', env, timeout: 600_000 }) }));
}

/** The AddressSanitizer runtime the instrumented addon was linked against, for LD_PRELOAD. */
function asanRuntime(): string | null {
  const r = spawnSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path.startsWith('/') && existsSync(path) ? path : null;
}

if (missing.length) {
  test.skip(`sanitizer runs: skipped because ${missing.join(', ')} is not installed`, () => {});
}

(missing.length ? describe.skip : describe)('emulated checks under sanitizers', () => {
  test.each(['thread', 'address'] as const)('%s sanitizer: every check passes and nothing is reported', (sanitizer) => {
    for (const { name, run } of buildAndRun(sanitizer)) {
      const output = `${name}:\n${run.stdout}\n${run.stderr}`;
      expect(output).not.toMatch(/WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error:/);
      expect({ name, failed: run.stdout.match(/^(\d+) failed/m)?.[1] }).toEqual({ name, failed: '0' });
      expect({ name, status: run.status }).toEqual({ name, status: 0 });
    }
  }, 900_000);

  const quick = [
    ...BAD_INPUT_CASES.filter((c) => c.quick).map((c) => ({ name: c.name, body: c.body, outcome: 'resolves' in c.expect ? { resolved: c.expect.resolves } : { rejected: expect.objectContaining(c.expect.rejects) } })),
    ...IN_FLIGHT_CASES.filter(([, , q]) => q).map(([name, body]) => ({ name, body, outcome: { resolved: 'same' } })),
  ];
  const cannotRun = missingBuild() ?? (asanRuntime() ? null : 'g++ -print-file-name=libasan.so names no library');
  (cannotRun ? test.skip : test)(`address sanitizer: the ${quick.length} quick robust cases against the instrumented addon${cannotRun ? ` (skipped: ${cannotRun})` : ''}`, () => {
    const addon = join(build('address'), 'psa_attention.node');
    const env = { ...process.env, ...SANITIZER_ENV, LD_PRELOAD: asanRuntime()!, PSA_EMU_ADDON_PATH: addon };
    for (const c of quick) {
      const run = runCase(c.body, { exposeGc: true, env, timeoutMs: 120_000 });
      expect({ case: c.name, ...summary(run), stderr: run.stderr.match(/ERROR: AddressSanitizer.*|runtime error:.*/)?.[0] ?? null }).toEqual({
        case: c.name, status: 0, signal: null, crash: null, outcome: c.outcome, stderr: null,
      });
    }
  }, 900_000);
});
