/**
 * The CPU execution model's own checks (cuda/emu/tests/model_check.cc), run from the emulated
 * build: fragment layouts of every primitive, shuffles and votes, cp.async, the Tensor Core
 * matmul against a host product, and the misuse reports. One jest test per check.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const program = join(__dirname, '..', '..', 'build-emu', 'psa_model_check');

if (!existsSync(program)) {
  test.skip(`CPU execution model checks: skipped because ${program} is absent (npm run build:emu builds it where cmake, g++ and the CUDA headers exist)`, () => {});
} else {
  const run = spawnSync(program, { encoding: 'utf8', timeout: 120_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed$/m);
    expect(lines.length).toBeGreaterThanOrEqual(18);
  });
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
