/**
 * The top-k threshold kernel (cuda/attention/topk_kernel.cuh), run in the emulated build by
 * cuda/emu/tests/topk_check.cc against a host std::nth_element over float64 scores from the
 * same rounded inputs and allowed sets: bit-exact on integer inputs (ties counted), within
 * rounding on float inputs; count and ratio modes, -inf rows, masks, layouts of block size 64,
 * 128 and 192, GQA, both memory layouts, head dims 1..256, fp16 and bf16. One jest test per check.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const program = join(__dirname, '..', '..', 'build-emu', 'psa_topk_check');

if (!existsSync(program)) {
  test.skip(`top-k threshold kernel checks: skipped because ${program} is absent (npm run build:emu builds it where cmake, g++ and the CUDA headers exist)`, () => {});
} else {
  const run = spawnSync(program, { encoding: 'utf8', timeout: 300_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(60);
  });
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
