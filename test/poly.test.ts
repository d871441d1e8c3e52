/** The polynomial exp2 softmax: coefficient table, error bound, and attention against the oracle on every backend. */
import { POLY_EXP2 } from '../lib/index';
import { forEachBackend, testIf } from './backends';
import { expectLse, relFrob } from './compare';
import { randomQKV, ShapeLike } from './data';
import { compareWithOracle, inputsFor, runOn } from './harness';
import { oracle, ORACLE_POLY, OracleOptions, polyExp2, polyRelError } from './oracle';
import { outputTolerance } from './profiles';

describe('POLY_EXP2 table', () => {
  test.each([2, 3, 4, 5])('degree %i: coefficients and stated error match the contract (docs/contract.md#softmax-and-outputs)', (d) => {
    expect(Array.from(POLY_EXP2[d].coefficients)).toEqual(ORACLE_POLY[d].coefficients);
    expect(POLY_EXP2[d].maxRelError).toBe(ORACLE_POLY[d].error);
    // The coefficients are float32 values already.
    for (const c of POLY_EXP2[d].coefficients) expect(Math.fround(c)).toBe(c);
  });
  test.each([2, 3, 4, 5])('degree %i: max relative error of p(f) vs 2^f on [0, 1) is within the stated error (x1.05)', (d) => {
    const maxErr = polyRelError(POLY_EXP2[d].coefficients);
    expect(maxErr).toBeLessThanOrEqual(POLY_EXP2[d].maxRelError * 1.05);
    // And the stated error is not loose by more than 2x (it is the minimax error).
    expect(maxErr).toBeGreaterThan(POLY_EXP2[d].maxRelError / 2);
  });
  test('oracle polyExp2: exact at integers, clamps below -127', () => {
    const c = ORACLE_POLY[3].coefficients;
    expect(polyExp2(0, c)).toBe(1);
    expect(polyExp2(-3, c)).toBe(1 / 8);
    expect(polyExp2(-1000, c)).toBe(Math.pow(2, -127));
  });
});

forEachBackend('poly softmax', (be) => {
  const shape: ShapeLike = { batch: 1, heads: 4, kvHeads: 2, seqQ: 130, seqK: 150, headDim: 40 };
  const dtype = be.profile.dtypes[0];
  const tol = outputTolerance(be.profile, dtype);

  describe('against the oracle with the same polynomial, and against exact exp', () => {
    const cases: [number, OracleOptions][] = [];
    for (const d of [2, 3, 4, 5]) {
      cases.push([d, { causal: true }]);
      cases.push([d, { causal: false, window: [20, 10], globalTokens: 2, blockSize: be.profile.blockSizes[0], blocks: { ratio: 0.3 }, topK: 15 }]);
    }
    for (const [d, opts] of cases) {
      testIf(be.cannot({ softmax: { degree: d } }), `degree ${d} ${JSON.stringify(opts)}`, async () => {
        const { r, data, wantOptions } = await compareWithOracle(be, shape, { ...opts, softmax: { degree: d } }, 30 + d);
        // Against exact exp (same kept keys): within the polynomial's error on top of the backend's own.
        const exact = oracle(data.q, data.k, data.v, shape, { ...wantOptions, softmax: 'exact' });
        expect(relFrob(r.output, exact.output)).toBeLessThanOrEqual(2 * POLY_EXP2[d].maxRelError + tol);
        // LSE = m + ln(sum E): off by at most ln(1 + error).
        expectLse(r.lse, exact, 2 * POLY_EXP2[d].maxRelError + be.profile.lseTolerance);
      });
    }
    test("'poly' is degree 3", async () => {
      const { r: a, data } = await compareWithOracle(be, shape, { causal: true, softmax: 'poly' }, 40);
      const b = await runOn(be, shape, { causal: true, softmax: { degree: 3 } }, data, dtype);
      expect(relFrob(a.output, b.output)).toBeLessThanOrEqual(1e-7);
    });
  });

  describe('custom coefficients (c0 first)', () => {
    const custom: [string, number[]][] = [
      ['degree 1: 1 + f', [1, 1]],
      ['degree 6 Taylor', [1, Math.LN2, Math.LN2 ** 2 / 2, Math.LN2 ** 3 / 6, Math.LN2 ** 4 / 24, Math.LN2 ** 5 / 120, Math.LN2 ** 6 / 720]],
      ['c0 = 2 and non-minimax higher terms', [2, 1.3862943611198906, 0.4804530139182014, 0.1110177, 0.0192]],
      ['non-float32 coefficients get rounded', [1, 0.69314718055994530942, 0.2402265069591007, 0.0555041086648216, 0.009618129107628477, 0.0013333558146428443]],
    ];
    for (const [title, coefficients] of custom) {
      testIf(be.cannot({ softmax: { coefficients } }), title, async () => {
        await compareWithOracle(be, shape, { causal: true, window: 40, topKRatio: 0.5, softmax: { coefficients } }, 41);
      });
    }
    test('the table coefficients given explicitly equal { degree }', async () => {
      const d = inputsFor(be, randomQKV(shape, 42), dtype);
      const a = await runOn(be, shape, { causal: true, softmax: { degree: 4 } }, d, dtype);
      const b = await runOn(be, shape, { causal: true, softmax: { coefficients: POLY_EXP2[4].coefficients } }, d, dtype);
      expect(relFrob(a.output, b.output)).toBeLessThanOrEqual(1e-7);
    });
  });

  describe('extreme score ranges (the t >= -127 clamp)', () => {
    for (const d of [2, 3, 5]) {
      testIf(be.cannot({ softmax: { degree: d } }), `degree ${d}, scale 40, amplitude 3`, async () => {
        const s: ShapeLike = { batch: 1, heads: 2, seqQ: 60, seqK: 60, headDim: 16 };
        await compareWithOracle(be, s, { causal: true, scale: 40, softmax: { degree: d } }, randomQKV(s, 43, 3));
      });
    }
  });
});
