/**
 * The emulated checks under ThreadSanitizer and under AddressSanitizer with
 * UndefinedBehaviorSanitizer (`npm run test:sanitize`; also part of `npm test`). Each CUDA
 * thread runs as an OS thread in these builds, so a missing __syncthreads is a data race
 * ThreadSanitizer sees. The sanitizers instrument the check programs (the model's own checks and
 * each kernel family's check against its host function: kernels, launchers, the conversion
 * path), not node, which they cannot instrument.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { which } = require('../../scripts/addon-build.js') as { which(name: string): string | null };
const missing = ['cmake', 'g++'].filter((t) => !which(t));

const CHECKS = ['psa_model_check', 'psa_forward_check', 'psa_select_check', 'psa_topk_check'];

function buildAndRun(sanitizer: 'thread' | 'address') {
  const dir = join(root, `build-${sanitizer === 'thread' ? 'tsan' : 'asan'}`);
  const configure = spawnSync('cmake', ['-S', root, '-B', dir, '-DPSA_EMULATED=ON', '-DPSA_ADDON=OFF', `-DPSA_SANITIZE=${sanitizer}`, '-DCMAKE_BUILD_TYPE=RelWithDebInfo'], { encoding: 'utf8' });
  if (configure.status !== 0) throw new Error(`cmake configure failed:\n${configure.stdout}\n${configure.stderr}`);
  const build = spawnSync('cmake', ['--build', dir, '--target', ...CHECKS, '-j', '2'], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`build failed:\n${build.stdout.slice(-3000)}\n${build.stderr.slice(-3000)}`);
  const env = {
    ...process.env,
    TSAN_OPTIONS: 'halt_on_error=1 second_deadlock_stack=1',
    ASAN_OPTIONS: 'detect_leaks=0 halt_on_error=1',
    UBSAN_OPTIONS: 'halt_on_error=1 print_stacktrace=1',
  };
  // --quick: the check programs leave out cases too large for one OS thread per CUDA thread.
  return CHECKS.map((name) => ({ name, run: spawnSync(join(dir, name), ['--quick'], { encoding: 'utf8', env, timeout: 600_000 }) }));
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
});
