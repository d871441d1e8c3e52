/**
 * Block selection (cuda/attention/select.h), run in the emulated build by
 * cuda/emu/tests/select_check.cc against a float64 host port of lib/reference/select.ts and
 * BlockLayout.fromSelection over the same rounded inputs: ratio, topBlocks, progressive and
 * window/sinks only, min/max clamps, bound estimates, GQA with shared selection, causal and not,
 * Nq != Nk, windows and sinks, block sizes 16..128, odd lengths, both memory layouts, fp16 and
 * bf16, up to 4096 key blocks; the O(1) tile rules against lib/mask.ts row by row; refused
 * parameters. One jest test per check.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const program = join(__dirname, '..', '..', 'build-emu', 'psa_select_check');

if (!existsSync(program)) {
  test.skip(`block selection checks: skipped because ${program} is absent (npm run build:emu builds it where cmake, g++ and the CUDA headers exist)`, () => {});
} else {
  const run = spawnSync(program, { encoding: 'utf8', timeout: 300_000 });
  const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  test('the check program ran to the end', () => {
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^0 failed/m);
    expect(lines.length).toBeGreaterThanOrEqual(40);
  });
  // Names carry timings and counts in parentheses: keep them out of the test titles.
  test.each(lines.map((l) => [l.replace(/^(PASS|FAIL) /, '').replace(/ \(rows .*$/, '').replace(/: .*$/, ''), l]))('%s', (_name, line) => {
    expect(line).toMatch(/^PASS /);
  });
}
