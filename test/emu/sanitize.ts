/**
 * What the sanitizer suites share (test/emu/sanitize-thread.test.ts and
 * sanitize-address.test.ts, two files so jest's two workers build the two trees at once): the
 * sanitized builds, the check programs they run, and the quick robust cases.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { which } = require('../../scripts/addon-build.js') as { which(name: string): string | null };
export const missing = ['cmake', 'g++'].filter((t) => !which(t));

// The model's own checks and the kernel families' checks against their host functions. The
// backward's is left out: one of its quick cases alone takes minutes under ThreadSanitizer.
export const CHECKS = ['psa_model_check', 'psa_forward_check', 'psa_select_check', 'psa_topk_check', 'psa_decode_check'];

export const SANITIZER_ENV = {
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
export function build(sanitizer: 'thread' | 'address'): string {
  const dir = join(root, `build-${sanitizer === 'thread' ? 'tsan' : 'asan'}`);
  const addon = sanitizer === 'address' ? ['-DPSA_ADDON=ON', `-DCMAKE_JS_INC=${nodeApiIncludes()}`, '-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION'] : ['-DPSA_ADDON=OFF'];
  const configure = spawnSync('cmake', ['-S', root, '-B', dir, '-DPSA_EMULATED=ON', ...addon, `-DPSA_SANITIZE=${sanitizer}`, '-DCMAKE_BUILD_TYPE=RelWithDebInfo'], { encoding: 'utf8' });
  if (configure.status !== 0) throw new Error(`cmake configure failed:\n${configure.stdout}\n${configure.stderr}`);
  const targets = sanitizer === 'address' ? [...CHECKS, 'psa_attention'] : CHECKS;
  const made = spawnSync('cmake', ['--build', dir, '--target', ...targets, '-j', '2'], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`build failed:\n${made.stdout.slice(-3000)}\n${made.stderr.slice(-3000)}`);
  return dir;
}

export function buildAndRun(sanitizer: 'thread' | 'address') {
  const dir = build(sanitizer);
  const env = { ...process.env, ...SANITIZER_ENV };
  // --quick: the check programs leave out cases too large for one OS thread per CUDA thread.
  return CHECKS.map((name) => ({ name, run: spawnSync(join(dir, name), ['--quick'], { encoding: 'utf8', env, timeout: 600_000 }) }));
}

/** The AddressSanitizer runtime the instrumented addon was linked against, for LD_PRELOAD. */
export function asanRuntime(): string | null {
  const r = spawnSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path.startsWith('/') && existsSync(path) ? path : null;
}


/** Builds the `sanitizer` tree and runs every check program in it: each passes and reports nothing. */
export function expectChecksClean(sanitizer: 'thread' | 'address'): void {
  for (const { name, run } of buildAndRun(sanitizer)) {
    const output = `${name}:\n${run.stdout}\n${run.stderr}`;
    expect(output).not.toMatch(/WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error:/);
    expect({ name, failed: run.stdout.match(/^(\d+) failed/m)?.[1] }).toEqual({ name, failed: '0' });
    expect({ name, status: run.status }).toEqual({ name, status: 0 });
  }
}
