// The backward's kernel source, included right after kernels.inl in the same namespace, so it
// uses that file's vector types, exponentials and helpers (internal linkage, as there).

namespace {

void accumulateTransposed(const float* p, int pPitch, const float* x, int xPitch, int rows, int cols, int dims, float* o, int oPitch) {
  for (int c = 0; c < cols; c += 4) {
    for (int d = 0; d < dims; d += 16) {
      float* out = o + c * oPitch + d;
      vf a00 = load(out), a01 = load(out + 8);
      vf a10 = load(out + oPitch), a11 = load(out + oPitch + 8);
      vf a20 = load(out + 2 * oPitch), a21 = load(out + 2 * oPitch + 8);
      vf a30 = load(out + 3 * oPitch), a31 = load(out + 3 * oPitch + 8);
      const float* pr = p + c;
      const float* xr = x + d;
      for (int r = 0; r < rows; r++, pr += pPitch, xr += xPitch) {
        const vf x0 = load(xr);
        const vf x1 = load(xr + 8);
        vf b = splat(pr[0]);
        a00 += b * x0;
        a01 += b * x1;
        b = splat(pr[1]);
        a10 += b * x0;
        a11 += b * x1;
        b = splat(pr[2]);
        a20 += b * x0;
        a21 += b * x1;
        b = splat(pr[3]);
        a30 += b * x0;
        a31 += b * x1;
      }
      store(out, a00);
      store(out + 8, a01);
      store(out + oPitch, a10);
      store(out + oPitch + 8, a11);
      store(out + 2 * oPitch, a20);
      store(out + 2 * oPitch + 8, a21);
      store(out + 3 * oPitch, a30);
      store(out + 3 * oPitch + 8, a31);
    }
  }
}

// E'(x) of the polynomial softmax in float64, the rule of lib/reference/exp.ts
// makeExpDerivative: t = x log2 e (not rounded), n = floor(t), f = t - n,
// E' = log2(e) p'(f) 2^n, and 0 below the clamp t < -127 where E is constant.
inline vf polyExp2Derivative(vf x, const float* c, int degree) {
  const double log2e = static_cast<double>(1.44269504088896341f);
  const vd t = __builtin_convertvector(x, vd) * log2e;
  const vl below = t < -127.0;
  const vd clamped = below ? vd{} - 127.0 : t;
  vd n = __builtin_convertvector(__builtin_convertvector(clamped, vl), vd);
  n = n > clamped ? n - 1.0 : n;  // floor of negative values
  const vd f = clamped - n;
  vd dp = vd{} + degree * static_cast<double>(c[degree]);
  for (int d = degree - 1; d >= 1; d--) dp = dp * f + d * static_cast<double>(c[d]);
  const vl bits = (__builtin_convertvector(n, vl) + 1023) << 52;
  const vd e = log2e * dp * __builtin_bit_cast(vd, bits);
  return __builtin_convertvector(below ? vd{} : e, vf);
}

void gradientRow(float* s, float* dp, int width, float tau, float max, float invSum, float rowD, const float* coefficients, int degree) {
  const float inf = __builtin_inff();
  const vf rowMax = splat(max);
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi keep = (x >= splat(tau)) & (x > splat(-inf));
    const vf shifted = select(keep, x - rowMax, splat(0.0f));
    const vf e = coefficients ? polyExp2(shifted, coefficients, degree) : expNonPositive(shifted);
    const vf de = coefficients ? polyExp2Derivative(shifted, coefficients, degree) : e;
    const vf g = load(dp + c) - rowD;
    store(s + c, select(keep, e * invSum, splat(0.0f)));
    store(dp + c, select(keep, de * invSum * g, splat(0.0f)));
  }
}

const BackwardKernels kBackwardKernels = {PSA_CPU_KERNELS_NAME, accumulateTransposed, gradientRow};

}  // namespace
