/**
 * The bad-input suite: each case of bad-input.cases.ts in its own child process on the
 * emulated build. A case passes only with its exact outcome, a clean exit and nothing on
 * stderr that points at a crash.
 */
import { BAD_INPUT_CASES } from './bad-input.cases';
import { missingBuild, runCase, summary } from './child';

const missing = missingBuild();
if (missing) test.skip(`bad-input cases: skipped because ${missing}`, () => {});

(missing ? describe.skip : describe)('bad input on every native entry (cuda-emu, one child process per case)', () => {
  test.each(BAD_INPUT_CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const run = runCase(c.body, { exposeGc: true });
    const outcome = 'resolves' in c.expect ? { resolved: c.expect.resolves } : { rejected: expect.objectContaining(c.expect.rejects) };
    expect(summary(run)).toEqual({ status: 0, signal: null, crash: null, outcome });
  });
});
