/**
 * Runs one of the emulated build's check programs (build-emu/psa_<name>_check) and turns its
 * "PASS <case>" / "FAIL <case>: <why>" lines into jest tests, one per case, plus one that the
 * program ran to its "0 failed" line. Absent program: one skipped test saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export function checkProgramSuite(name: string, what: string, minCases: number, timeoutMs = 300_000): void {
  const program = join(__dirname, '..', '..', 'build-emu', `psa_${name}_check`);
  if (!existsSync(program)) {
    test.skip(`${what}: skipped because ${program} is absent (npm run build:emu builds it where cmake, g++ and the CUDA headers exist)`, () => {});
    return;
  }
  const run = spawnSync(program, { encoding: 'utf8', timeout: timeoutMs });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(minCases);
  });
  // Titles without the measurements in parentheses and the reason after a colon.
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, '').replace(/ \((rows|rel\. error|\|A\|) .*$/, '').replace(/: .*$/, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
