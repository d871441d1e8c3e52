/**
 * The softmax exponentials, in float32 as a device computes them. `exact` is exp; `poly`
 * evaluates E(x) = p(f) * 2^n with t = max(x * log2 e, -127), n = floor(t), f = t - n, and
 * p by Horner: each step p * f + c is one fused multiply-add (p * f is exact in float64 for
 * float32 operands, so one rounding per step, as with FMA).
 */
import type { ResolvedSoftmax } from '../softmax';

const fround = Math.fround;
const LOG2E_F32 = fround(Math.LOG2E);

/** Returns E(x) for x = s - m <= 0, rounded to float32. */
export function makeExp(softmax: ResolvedSoftmax): (x: number) => number {
  if (softmax.kind === 'exact') return (x) => fround(Math.exp(x));
  const c = Array.from(softmax.coefficients);
  const degree = c.length - 1;
  return (x) => {
    let t = fround(x * LOG2E_F32);
    if (t < -127) t = -127;
    const n = Math.floor(t);
    const f = fround(t - n);
    let p = c[degree];
    for (let d = degree - 1; d >= 0; d--) p = fround(p * f + c[d]);
    return fround(p * 2 ** n);
  };
}

const pow2 = new Float64Array(1);
const pow2Bits = new Int32Array(pow2.buffer);
const HIGH_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little- or big-endian

/**
 * exp(x) for x <= 0, the exact softmax's exponential, about twice as fast as Math.exp here
 * (which costs a call into C++ per score). 2^t with t = x log2 e split as t = k + f,
 * f in [0, 1): e^(f ln 2) by its Taylor series to degree 10 (relative error below 1e-9,
 * four orders under the reference's 1e-5 budget), times 2^k built in the exponent bits.
 * Below 2^-1022 it returns 0 (those terms are invisible next to the row maximum's 1).
 */
export function expNonPositive(x: number): number {
  const t = x * Math.LOG2E;
  if (t < -1022) return 0;
  const k = Math.floor(t);
  const z = (t - k) * Math.LN2;
  const p =
    1 + z * (1 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120 + z * (1 / 720 + z * (1 / 5040 + z * (1 / 40320 + z * (1 / 362880 + z / 3628800)))))))));
  pow2Bits[1 - HIGH_WORD] = 0;
  pow2Bits[HIGH_WORD] = (k + 1023) << 20;
  return p * pow2[0];
}

/**
 * E'(x), the derivative the backward pass needs, in float64: exp for the exact softmax; for the
 * polynomial E(x) = p(f) 2^n (t = x log2 e, n = floor(t), f = t - n), E'(x) = log2(e) p'(f) 2^n,
 * and 0 below the clamp t < -127 where E is constant.
 */
export function makeExpDerivative(softmax: ResolvedSoftmax): (x: number) => number {
  if (softmax.kind === 'exact') return Math.exp;
  const c = Array.from(softmax.coefficients);
  const degree = c.length - 1;
  return (x) => {
    const t = x * LOG2E_F32;
    if (t < -127) return 0;
    const n = Math.floor(t);
    const f = t - n;
    let dp = degree * c[degree];
    for (let d = degree - 1; d >= 1; d--) dp = dp * f + d * c[d];
    return LOG2E_F32 * dp * 2 ** n;
  };
}
