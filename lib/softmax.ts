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
  return { kind: 'poly', degree, coefficients: Float32Array.from(coefficients) };
}
