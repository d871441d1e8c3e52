/**
 * The fused sparse forward kernel (cuda/attention), run in the emulated build by
 * cuda/emu/tests/forward_check.cc against a float64 host attention over the same rounded
 * inputs and allowed sets: fp16 and bf16, masks, layouts, GQA, both memory layouts, odd head
 * dims, empty rows, poly softmax, top-k thresholds. One jest test per check.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const program = join(__dirname, '..', '..', 'build-emu', 'psa_forward_check');

if (!existsSync(program)) {
  test.skip(`forward kernel checks: skipped because ${program} is absent (npm run build:emu builds it where cmake, g++ and the CUDA headers exist)`, () => {});
} else {
  const run = spawnSync(program, { encoding: 'utf8', timeout: 300_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(40);
  });
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
