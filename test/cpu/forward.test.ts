/**
 * The CPU kernels (cpu/) against the float64 attention of cpu/tests/forward_check.cc: odd head
 * dims and lengths, Nq != Nk, GQA, both memory layouts, windows, sinks, layouts, selection,
 * top-k with ties, the polynomial exp2, each kernel set this CPU runs, 1 vs 3 threads. The
 * program is built here with cmake; without cmake or a compiler the suite skips saying so,
 * except under CI=true, where that is a failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const root = join(__dirname, '..', '..');
const buildDir = join(root, 'build-cpu-check');
const program = join(buildDir, 'psa_cpu_forward_check');

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, name)));
}

function build(): string | null {
  const missing = [!onPath('cmake') && 'cmake', !['c++', 'g++', 'clang++'].some(onPath) && 'a C++ compiler'].filter(Boolean);
  if (missing.length) return `${missing.join(' and ')} not found`;
  for (const args of [['-S', join(root, 'cpu'), '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release'], ['--build', buildDir, '-j2']]) {
    const r = spawnSync('cmake', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cmake ${args.join(' ')} failed:\n${r.stdout.slice(-3000)}${r.stderr.slice(-3000)}`);
  }
  return null;
}

const why = build();
if (why !== null) {
  if (process.env.CI === 'true') test('the CPU check program builds', () => { throw new Error(`cannot build it: ${why}`); });
  else test.skip(`CPU kernel checks: skipped because ${why}`, () => {});
} else {
  const run = spawnSync(program, { encoding: 'utf8', timeout: 300_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(60);
  });
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, '').replace(/: .*$/, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
