/**
 * A check program of cpu/tests, built here with cmake (cpu/CMakeLists.txt) and run: one jest
 * test per "PASS"/"FAIL" line it prints, and one that it ran to the end ("0 failed", at least
 * `minLines` cases). Without cmake or a compiler the suite skips saying so, except under
 * CI=true, where that is a failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const root = join(__dirname, '..', '..');
const buildDir = join(root, 'build-cpu-check');

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, name)));
}

function build(): string | null {
  const missing = [!onPath('cmake') && 'cmake', !['c++', 'g++', 'clang++'].some(onPath) && 'a C++ compiler'].filter(Boolean);
  if (missing.length) return `${missing.join(' and ')} not found`;
  // Suites build the one directory in parallel: flock (where there is one) takes turns.
  const locked = onPath('flock');
  mkdirSync(buildDir, { recursive: true });
  for (const args of [['-S', join(root, 'cpu'), '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release'], ['--build', buildDir, '-j2']]) {
    const r = locked ? spawnSync('flock', [join(buildDir, '.lock'), 'cmake', ...args], { encoding: 'utf8' }) : spawnSync('cmake', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cmake ${args.join(' ')} failed:\n${r.stdout.slice(-3000)}${r.stderr.slice(-3000)}`);
  }
  return null;
}

export function checkProgram(name: string, minLines: number): void {
  const why = build();
  if (why !== null) {
    if (process.env.CI === 'true') test(`the CPU check program ${name} builds`, () => { throw new Error(`cannot build it: ${why}`); });
    else test.skip(`${name}: skipped because ${why}`, () => {});
    return;
  }
  const run = spawnSync(join(buildDir, name), { encoding: 'utf8', timeout: 300_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(minLines);
  });
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, '').replace(/( \(|: ).*$/, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
