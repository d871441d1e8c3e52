/**
 * The one comparison of every suite: run a backend and the float64 oracle on the same inputs
 * and options and hold the result to the backend's profile (test/profiles.ts,
 * docs/contract.md#accuracy):
 *   - inputs are rounded to the compute type first where the profile says so (16-bit compute), so
 *     the backend and the oracle see the same values;
 *   - the block selection equals the oracle's, or differs only within the profile's tolerance
 *     at the cut; the thresholds are within the profile's tolerance of the oracle's;
 *   - an exact profile is then held to the oracle's own selection and thresholds (layout and
 *     stats equal); a tolerant one to the oracle given its own selection and thresholds;
 *   - output within the profile's tolerance for the compute type, LSE, stats and layout flags.
 */
import { attention, Tensor } from '../lib/index';
import type { AttentionOptions, AttentionResult, BlockLayout } from '../lib/index';
import type { BackendUnderTest, ComputeType } from './backends';
import { expectLayout, expectLse, expectOutput, expectSelection, expectStats, expectThresholds } from './compare';
import { randomQKV, ShapeLike } from './data';
import { oracle, OracleOptions, OracleResult, oracleSelection, optionsFromLayout } from './oracle';
import { outputTolerance } from './profiles';
import { roundTo } from './rounding';

export interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface CheckOptions {
  /** Compute type; default the profile's first. */
  dtype?: ComputeType;
  /** Pass q, k, v as tensors at the profile's tensor home (default: Float32Arrays with the shape). */
  tensors?: boolean;
  /**
   * Run with this layout (the options then carry no window, sinks or blocks); the oracle is
   * given its selection.
   */
  layout?: BlockLayout;
}

export interface Compared {
  r: AttentionResult<Float32Array>;
  /** The oracle the result was held to (its own selection, or the backend's: see above), and its options. */
  want: OracleResult;
  wantOptions: OracleOptions;
  /** The inputs as both sides saw them. */
  data: Inputs;
  /** Rows whose selection differed from the oracle's within the profile's tolerance. */
  excused: number;
}

/**
 * Kept keys given the backend's thresholds: it keeps float32 scores >= tau, the oracle's
 * float64 scores differ from those by accumulation rounding (about 1e-7 here), so a slack of
 * 2e-6 keeps the k-th key without taking in its neighbours.
 */
const THRESHOLD_SLACK = 2e-6;

/** The inputs as `be` computes with them in `dtype`. */
export function inputsFor(be: BackendUnderTest, d: Inputs, dtype: ComputeType = be.profile.dtypes[0]): Inputs {
  if (!be.profile.roundsInputs) return d;
  return { q: roundTo(d.q, dtype), k: roundTo(d.k, dtype), v: roundTo(d.v, dtype) };
}

/** `attention` on `be` in `dtype`, from Float32Arrays or from tensors at the profile's home; the output as a Float32Array. */
export async function runOn(
  be: BackendUnderTest, shape: ShapeLike, options: AttentionOptions, d: Inputs, dtype: ComputeType, tensors = false,
): Promise<AttentionResult<Float32Array>> {
  const opts: AttentionOptions = { ...options, shape, backend: be.name, dtype };
  if (!tensors) return attention(d.q, d.k, d.v, opts);
  const home = be.profile.tensorHome;
  const dims = (n: number, h: number) => (shape.layout === 'bnhd' ? [shape.batch, n, h, shape.headDim] : [shape.batch, h, n, shape.headDim]);
  const make = (x: Float32Array, n: number, h: number) => (home === 'cpu' ? Promise.resolve(Tensor.fromFloat32(x, dims(n, h))) : Tensor.upload(x, dims(n, h), { type: dtype, location: home }));
  const Hkv = shape.kvHeads ?? shape.heads;
  const Nk = shape.seqK ?? shape.seqQ;
  const made: Tensor[] = [];
  try {
    for (const [x, n, h] of [[d.q, shape.seqQ, shape.heads], [d.k, Nk, Hkv], [d.v, Nk, Hkv]] as const) made.push(await make(x, n, h));
    const rt = await attention(made[0], made[1], made[2], opts);
    const out = rt.output;
    expect(out.location).toBe(home);
    expect(out.dims).toEqual(made[0].dims);
    try {
      return { ...rt, output: await out.download() };
    } finally {
      out.dispose();
    }
  } finally {
    for (const t of made) t.dispose();
  }
}

/**
 * A layout `be` built from `d` (as `inputsFor` gives it) with `opts`: its selection against
 * the oracle's under the profile's tolerance, its flags against the oracle given that
 * selection. Returns that oracle.
 */
export function expectBuiltLayout(be: BackendUnderTest, layout: BlockLayout, d: Inputs, shape: ShapeLike, opts: OracleOptions): OracleResult {
  const tol = be.profile.selectionTolerance;
  if (opts.blocks) expectSelection(layout, oracleSelection(d.q, d.k, shape, opts), tol);
  const want = oracle(d.q, d.k, d.v, shape, tol === 0 ? opts : { ...opts, ...optionsFromLayout(layout) });
  expectLayout(layout, want);
  return want;
}

export async function compareWithOracle(
  be: BackendUnderTest, shape: ShapeLike, opts: OracleOptions, data: Inputs | number, check: CheckOptions = {},
): Promise<Compared> {
  const p = be.profile;
  const dtype = check.dtype ?? p.dtypes[0];
  const d = inputsFor(be, typeof data === 'number' ? randomQKV(shape, data) : data, dtype);
  const r = await runOn(be, shape, { ...(opts as AttentionOptions), layout: check.layout, returnLse: true, returnThresholds: true }, d, dtype, check.tensors);
  expect(r.backend).toBe(be.name);
  if (check.layout) expect(r.layout).toBe(check.layout);

  const o: OracleOptions = check.layout ? { ...opts, ...optionsFromLayout(check.layout) } : opts;
  const own = oracle(d.q, d.k, d.v, shape, o);
  const exact = p.selectionTolerance === 0;
  const topK = o.topK !== undefined || o.topKRatio !== undefined;
  const excused = o.blocks ? expectSelection(r.layout!, oracleSelection(d.q, d.k, shape, o), p.selectionTolerance) : 0;
  // Rows of another selection have other candidates, hence other thresholds.
  if (!(topK && excused)) expectThresholds(r.thresholds, own, p.thresholdTolerance);

  const given = !exact && (own.sparse || topK);
  const wantOptions: OracleOptions = !given ? o : {
    ...o,
    ...(own.sparse ? optionsFromLayout(r.layout!) : {}),
    ...(topK ? { thresholds: r.thresholds!, thresholdSlack: THRESHOLD_SLACK } : {}),
  };
  const want = given ? oracle(d.q, d.k, d.v, shape, wantOptions) : own;
  expectOutput(r.output, want, outputTolerance(p, dtype));
  expectLse(r.lse, want, p.lseTolerance);
  if (given && topK) {
    // Keys within the slack of tau may fall either way.
    const { stats } = r;
    expect({ allowedPairs: stats.allowedPairs, blocksVisited: stats.blocksVisited, blocksDense: stats.blocksDense })
      .toEqual({ allowedPairs: want.stats.allowedPairs, blocksVisited: want.stats.blocksVisited, blocksDense: want.stats.blocksDense });
    expect(Math.abs(stats.keptPairs - want.stats.keptPairs)).toBeLessThanOrEqual(Math.max(2, 1e-3 * want.stats.keptPairs));
  } else {
    expectStats(r.stats, want);
  }
  if (want.sparse) expectLayout(r.layout, want);
  else expect(r.layout).toBeUndefined();
  return { r, want, wantOptions, data: d, excused };
}
