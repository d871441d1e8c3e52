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
