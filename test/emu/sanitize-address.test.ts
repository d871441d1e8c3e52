/**
 * The emulated checks and the emulated addon under AddressSanitizer with
 * UndefinedBehaviorSanitizer (`npm run test:sanitize`, with sanitize-thread.test.ts; also part of
 * `npm test`). node is not instrumented, so the runtime is preloaded into it, and the quick
 * bad-input and in-flight cases (test/robust) run against the instrumented addon, each in its
 * own node process.
 */
import { join } from 'node:path';
import { BAD_INPUT_CASES } from '../robust/bad-input.cases';
import { missingBuild, runCase, summary } from '../robust/child';
import { IN_FLIGHT_CASES } from '../robust/in-flight.cases';
import { asanRuntime, build, expectChecksClean, missing, SANITIZER_ENV } from './sanitize';

if (missing.length) {
  test.skip(`AddressSanitizer runs: skipped because ${missing.join(', ')} is not installed`, () => {});
}

(missing.length ? describe.skip : describe)('emulated checks and addon under AddressSanitizer', () => {
  test('address sanitizer: every check passes and nothing is reported', () => expectChecksClean('address'), 900_000);
  const quick = [
    ...BAD_INPUT_CASES.filter((c) => c.quick).map((c) => ({ name: c.name, body: c.body, outcome: 'resolves' in c.expect ? { resolved: c.expect.resolves } : { rejected: expect.objectContaining(c.expect.rejects) } })),
    ...IN_FLIGHT_CASES.filter(([, , q]) => q).map(([name, body]) => ({ name, body, outcome: { resolved: 'same' } })),
  ];
  const cannotRun = missingBuild() ?? (asanRuntime() ? null : 'g++ -print-file-name=libasan.so names no library');
  (cannotRun ? test.skip : test)(`address sanitizer: the ${quick.length} quick robust cases against the instrumented addon${cannotRun ? ` (skipped: ${cannotRun})` : ''}`, () => {
    const addon = join(build('address'), 'psa_attention.node');
    const env = { ...process.env, ...SANITIZER_ENV, LD_PRELOAD: asanRuntime()!, PSA_EMU_ADDON_PATH: addon };
    for (const c of quick) {
      const run = runCase(c.body, { exposeGc: true, env, timeoutMs: 120_000 });
      expect({ case: c.name, ...summary(run), stderr: run.stderr.match(/ERROR: AddressSanitizer.*|runtime error:.*/)?.[0] ?? null }).toEqual({
        case: c.name, status: 0, signal: null, crash: null, outcome: c.outcome, stderr: null,
      });
    }
  }, 900_000);
});
