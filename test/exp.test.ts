/** The reference's exponential for the exact softmax, against Math.exp. */
import fc from 'fast-check';
import { expNonPositive } from '../lib/reference/exp';

test('exp(x) for x <= 0 within 1e-9 relative of Math.exp, 0 at exp(0) = 1 exactly', () => {
  expect(expNonPositive(0)).toBe(1);
  expect(expNonPositive(-Infinity)).toBe(0);
  fc.assert(
    fc.property(fc.double({ min: -700, max: 0, noNaN: true }), (x) => Math.abs(expNonPositive(x) / Math.exp(x) - 1) < 1e-9),
    { seed: 7, numRuns: 20000 },
  );
});

test('below 2^-1022 it is 0 (negligible next to the row maximum)', () => {
  expect(expNonPositive(-709)).toBe(0);
  expect(expNonPositive(-1e300)).toBe(0);
});
