/** One call: run the library and the oracle on the same inputs and options, and compare everything. */
import { attention } from '../lib/index';
import type { AttentionOptions, AttentionResult } from '../lib/index';
import { expectLayout, expectLse, expectOutput, expectStats, expectThresholds } from './compare';
import { randomQKV, ShapeLike } from './data';
import { oracle, OracleOptions, OracleResult } from './oracle';

export interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface CheckOptions {
  /** Output tolerance (relative Frobenius); default 1e-5. */
  tol?: number;
  /** Oracle options overriding those given to the library (e.g. exact exp for a poly run). */
  oracleOptions?: OracleOptions;
  /** Skip the LSE / layout comparisons. */
  lse?: boolean;
  layout?: boolean;
}

export async function compareWithOracle(
  backend: string, shape: ShapeLike, opts: OracleOptions, data: Inputs | number, check: CheckOptions = {},
): Promise<{ r: AttentionResult<Float32Array>; want: OracleResult; data: Inputs }> {
  const d = typeof data === 'number' ? randomQKV(shape, data) : data;
  const r = await attention(d.q, d.k, d.v, {
    ...(opts as AttentionOptions), shape, returnLse: true, returnThresholds: true, backend: backend as AttentionOptions['backend'],
  });
  const want = oracle(d.q, d.k, d.v, shape, check.oracleOptions ?? opts);
  expectOutput(r.output, want, check.tol ?? 1e-5);
  if (check.lse !== false) expectLse(r.lse, want);
  if (!check.oracleOptions) {
    expectThresholds(r.thresholds, want);
    expectStats(r.stats, want);
    if (want.sparse && check.layout !== false) expectLayout(r.layout, want);
    if (!want.sparse) expect(r.layout).toBeUndefined();
  }
  return { r, want, data: d };
}
