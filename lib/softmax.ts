/**
 * The polynomial exp2 of the contract: E(x) = p(f) * 2^n with t = max(x*log2(e), -127),
 * n = floor(t), f = t - n, p by Horner in float32. Minimax coefficients of 2^f on [0, 1).
 */
import { OptionError } from './errors';

/** [c0, c1, ..., c_degree] per degree, and the max relative error of p(f) against 2^f on [0, 1). */
export const POLY_EXP2: Readonly<Record<number, { coefficients: readonly number[]; maxRelError: number }>> = {
  2: { coefficients: [1, 0.6657850742340087890625, 0.330107033252716064453125], maxRelError: 2.1e-3 },
  3: { coefficients: [1, 0.695146143436431884765625, 0.227564394474029541015625, 0.077119089663028717041015625], maxRelError: 8.8e-5 },
  4: {
    coefficients: [1, 0.693042695522308349609375, 0.2412912547588348388671875, 5.2225358784198760986328125e-2, 1.3434938155114650726318359375e-2],
    maxRelError: 3.0e-6,
  },
  5: {
    coefficients: [
      1, 0.693151414394378662109375, 0.24016360938549041748046875, 5.5802188813686370849609375e-2, 9.01452265679836273193359375e-3,
      1.86810153536498546600341796875e-3,
    ],
    maxRelError: 1.7e-7,
  },
};

export const DEFAULT_POLY_DEGREE = 3;

export type ResolvedSoftmax = { kind: 'exact' } | { kind: 'poly'; degree: number; coefficients: Float32Array };

/** Normalise the `softmax` option; coefficients are rounded to float32, as every backend uses them. */
export function resolveSoftmax(option: unknown): ResolvedSoftmax {
  if (option === undefined || option === 'exact') return { kind: 'exact' };
  if (option === 'poly') return poly(DEFAULT_POLY_DEGREE, POLY_EXP2[DEFAULT_POLY_DEGREE].coefficients);
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new OptionError(`softmax must be 'exact', 'poly' or { degree, coefficients }, got ${String(option)}`, 'softmax');
  }
  const { degree, coefficients, ...rest } = option as { degree?: unknown; coefficients?: unknown };
  if (Object.keys(rest).length) throw new OptionError(`unknown softmax option ${Object.keys(rest)[0]}`, 'softmax');
  if (coefficients === undefined) {
    const d = degree ?? DEFAULT_POLY_DEGREE;
    if (typeof d !== 'number' || !(d in POLY_EXP2)) throw new OptionError(`softmax.degree must be 2, 3, 4 or 5 (or give coefficients), got ${String(d)}`, 'softmax.degree');
    return poly(d, POLY_EXP2[d].coefficients);
  }
  if (!Array.isArray(coefficients) && !ArrayBuffer.isView(coefficients)) {
    throw new OptionError('softmax.coefficients must be an array [c0, c1, ..., c_degree]', 'softmax.coefficients');
  }
  const c = Array.from(coefficients as ArrayLike<number>);
  if (c.length < 2 || c.length > 9) throw new OptionError(`softmax.coefficients must hold 2 to 9 numbers (degree 1..8), got ${c.length}`, 'softmax.coefficients');
  if (!c.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new OptionError('softmax.coefficients must be finite numbers', 'softmax.coefficients');
  if (degree !== undefined && degree !== c.length - 1) {
    throw new OptionError(`softmax.degree ${String(degree)} does not match ${c.length} coefficients (expected degree + 1, c0 first)`, 'softmax.degree');
  }
  return poly(c.length - 1, c);
}

function poly(degree: number, coefficients: readonly number[]): ResolvedSoftmax {
  const c = Float32Array.from(coefficients);
  checkPolynomial(c);
  return { kind: 'poly', degree, coefficients: c };
}

/** The range a polynomial's values on [0, 1) must stay in: it must approximate 2^f within a factor 256. */
export const POLY_RANGE = [2 ** -8, 2 ** 8] as const;

/**
 * Coefficients are used in float32, so they are checked in float32: finite, and p(f) inside
 * POLY_RANGE for every f in [0, 1) as float32 Horner evaluates it. That keeps every weight
 * positive (no NaN LSE), every row sum finite (at most 2^8 per key), and every product
 * p * 2^n at the -127 clamp a positive subnormal rather than zero.
 *
 * The float64 extremes of p on [0, 1] are found on a grid of 1025 points and at the roots of
 * p' (bracketed on that grid, then bisected); float32 Horner differs from them by at most
 * 2 * degree * 2^-24 * Σ|c_i| (the classic Horner bound), which the check adds as a margin.
 */
function checkPolynomial(c: Float32Array): void {
  const bad = (why: string) => new OptionError(`softmax.coefficients ${why}`, 'softmax.coefficients');
  if (!c.every((x) => Number.isFinite(x))) throw bad(`overflow float32 (they are used in float32): [${Array.from(c)}]`);
  const n = c.length - 1;
  const p = (f: number) => {
    let r = c[n];
    for (let d = n - 1; d >= 0; d--) r = r * f + c[d];
    return r;
  };
  const dp = (f: number) => {
    let r = n * c[n];
    for (let d = n - 1; d >= 1; d--) r = r * f + d * c[d];
    return r;
  };
  const GRID = 1024;
  const points = Array.from({ length: GRID + 1 }, (_, g) => g / GRID);
  for (let g = 0; g < GRID; g++) {
    let a = g / GRID;
    let b = (g + 1) / GRID;
    if (Math.sign(dp(a)) === Math.sign(dp(b))) continue;
    for (let it = 0; it < 60; it++) {
      const mid = (a + b) / 2;
      if (Math.sign(dp(mid)) === Math.sign(dp(a))) a = mid;
      else b = mid;
    }
    points.push((a + b) / 2);
  }
  const values = points.map(p);
  const margin = 2 * n * 2 ** -24 * c.reduce((s, x) => s + Math.abs(x), 0);
  const lo = Math.min(...values) - margin;
  const hi = Math.max(...values) + margin;
  if (!(lo >= POLY_RANGE[0] && hi <= POLY_RANGE[1])) {
    throw bad(`must approximate 2^f on [0, 1): p(f) must stay within [2^-8, 2^8], but it reaches [${lo.toPrecision(4)}, ${hi.toPrecision(4)}]`);
  }
}

/**
 * max over f in [0, 1) of |p(f) / (c0 2^f) - 1|: how far the polynomial is from a scaled 2^f.
 * The device kernels rescale running sums by exact powers of two when a row's maximum moves,
 * which a polynomial E only follows up to this error (docs/contract.md#backends).
 */
export function polyRelativeError(c: ArrayLike<number>): number {
  let worst = 0;
  const n = 4096;
  for (let i = 0; i < n; i++) {
    const f = i / n;
    let p = c[c.length - 1];
    for (let k = c.length - 2; k >= 0; k--) p = p * f + c[k];
    worst = Math.max(worst, Math.abs(p / (c[0] * 2 ** f) - 1));
  }
  return worst;
}
