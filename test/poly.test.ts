/** The polynomial exp2 softmax: coefficient table, error bound, and attention against the oracle. */
import { attention, POLY_EXP2 } from '../lib/index';
import { forEachBackend } from './backends';
import { expectLse, expectOutput, relFrob } from './compare';
import { randomQKV, ShapeLike } from './data';
import { compareWithOracle } from './harness';
import { oracle, ORACLE_POLY, OracleOptions, polyExp2 } from './oracle';

describe('POLY_EXP2 table', () => {
  test.each([2, 3, 4, 5])('degree %i: coefficients and stated error match DESIGN.md', (d) => {
    expect(Array.from(POLY_EXP2[d].coefficients)).toEqual(ORACLE_POLY[d].coefficients);
    expect(POLY_EXP2[d].maxRelError).toBe(ORACLE_POLY[d].error);
    // The coefficients are float32 values already.
    for (const c of POLY_EXP2[d].coefficients) expect(Math.fround(c)).toBe(c);
  });
  test.each([2, 3, 4, 5])('degree %i: max relative error of p(f) vs 2^f on [0, 1) is within the stated error (x1.05)', (d) => {
    const c = POLY_EXP2[d].coefficients;
    let maxErr = 0;
    const n = 200000;
    for (let i = 0; i < n; i++) {
      const f = i / n;
      let p = c[c.length - 1];
      for (let k = c.length - 2; k >= 0; k--) p = p * f + c[k];
      maxErr = Math.max(maxErr, Math.abs(p / Math.pow(2, f) - 1));
    }
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

  describe('against the oracle with the same polynomial, and against exact exp', () => {
    const cases: [number, OracleOptions][] = [];
    for (const d of [2, 3, 4, 5]) {
      cases.push([d, { causal: true }]);
      cases.push([d, { causal: false, window: [20, 10], globalTokens: 2, blockSize: 16, blocks: { ratio: 0.3 }, topK: 15 }]);
    }
    test.each(cases)('degree %i %j', async (d, opts) => {
      const withPoly: OracleOptions = { ...opts, softmax: { degree: d } };
      const { data } = await compareWithOracle(be.name, shape, withPoly, 30 + d, { tol: 1e-5 });
      const r = await attention(data.q, data.k, data.v, { ...(withPoly as object), shape, backend: be.name, returnLse: true });
      const exact = oracle(data.q, data.k, data.v, shape, { ...opts, softmax: 'exact' });
      const err = relFrob(r.output, exact.output);
      expect(err).toBeLessThanOrEqual(2 * POLY_EXP2[d].maxRelError + 1e-6);
      // LSE = m + ln(sum E): off by at most ln(1 + error).
      expectLse(r.lse, exact, 2 * POLY_EXP2[d].maxRelError + 2e-5);
    });
    test("'poly' is degree 3", async () => {
      const { q, k, v } = randomQKV(shape, 40);
      const a = await attention(q, k, v, { shape, causal: true, softmax: 'poly', backend: be.name });
      const b = await attention(q, k, v, { shape, causal: true, softmax: { degree: 3 }, backend: be.name });
      expect(relFrob(a.output, b.output)).toBeLessThanOrEqual(1e-7);
      expectOutput(a.output, oracle(q, k, v, shape, { causal: true, softmax: 'poly' }));
    });
  });

  describe('custom coefficients (c0 first)', () => {
    const custom: [string, number[]][] = [
      ['degree 1: 1 + f', [1, 1]],
      ['degree 6 Taylor', [1, Math.LN2, Math.LN2 ** 2 / 2, Math.LN2 ** 3 / 6, Math.LN2 ** 4 / 24, Math.LN2 ** 5 / 120, Math.LN2 ** 6 / 720]],
      ['c0 = 2 and non-minimax higher terms', [2, 1.3862943611198906, 0.4804530139182014, 0.1110177, 0.0192]],
      ['non-float32 coefficients get rounded', [1, 0.69314718055994530942, 0.2402265069591007, 0.0555041086648216, 0.009618129107628477, 0.0013333558146428443]],
    ];
    test.each(custom)('%s', async (_t, coefficients) => {
      await compareWithOracle(be.name, shape, { causal: true, window: 40, topKRatio: 0.5, softmax: { coefficients } }, 41);
    });
    test('the table coefficients given explicitly equal { degree }', async () => {
      const { q, k, v } = randomQKV(shape, 42);
      const a = await attention(q, k, v, { shape, causal: true, softmax: { degree: 4 }, backend: be.name });
      const b = await attention(q, k, v, { shape, causal: true, softmax: { coefficients: POLY_EXP2[4].coefficients }, backend: be.name });
      expect(relFrob(a.output, b.output)).toBeLessThanOrEqual(1e-7);
    });
  });

  describe('extreme score ranges (the t >= -127 clamp)', () => {
    test.each([2, 3, 5])('degree %i, scale 40, amplitude 3', async (d) => {
      const s: ShapeLike = { batch: 1, heads: 2, seqQ: 60, seqK: 60, headDim: 16 };
      const { q, k, v } = randomQKV(s, 43, 3);
      await compareWithOracle(be.name, s, { causal: true, scale: 40, softmax: { degree: d } }, { q, k, v });
    });
  });
});
