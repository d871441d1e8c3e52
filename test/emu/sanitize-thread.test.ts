/**
 * The emulated checks under ThreadSanitizer (`npm run test:sanitize`, with
 * sanitize-address.test.ts; also part of `npm test`). Each CUDA thread runs as an OS thread in
 * these builds, so a missing __syncthreads is a data race ThreadSanitizer sees. It instruments
 * the check programs: the model's own checks and each kernel family's check against its host
 * function (kernels, launchers, the conversion path).
 */
import { expectChecksClean, missing } from './sanitize';

if (missing.length) {
  test.skip(`ThreadSanitizer runs: skipped because ${missing.join(', ')} is not installed`, () => {});
}

(missing.length ? describe.skip : describe)('emulated checks under ThreadSanitizer', () => {
  test('thread sanitizer: every check passes and nothing is reported', () => expectChecksClean('thread'), 900_000);
});
