// The polynomial exp2 of `softmax: 'poly'` (docs/contract.md#softmax-and-outputs), the one the
// JS backends compute too: t = max(t, -127), n = floor(t), f = t - n, p = Horner(c, f) in
// float32 (one fused multiply-add per step), and the float32 product p * 2^n rounded to nearest
// with gradual underflow, 2^n built exactly. Adding n to the exponent bits of p instead would
// carry into the sign bit where p < 1 and n = -127 (NaN for scores about 88 nats below the row
// max). The library validates coefficients so that 2^-8 <= p(f) <= 2^8 on [0, 1): the product
// is then positive and finite for every t <= 0, subnormal near the clamp and never 0 there
// (2^-8 * 2^-127 is above the least subnormal, 2^-149).
#pragma once

#include <cmath>
#include <cstdint>

#include "../cuda_compat.h"
#include "bits.cuh"
#if defined(PSA_EMULATED)
#include "../emu/counters.h"
#endif

namespace psa::gpu {

// 2^n exactly for an integer n in [-127, 127]: a normal power of two, or the subnormal 2^-127.
__device__ __forceinline__ float exact_pow2(int n) { return bits_float(n >= -126 ? static_cast<std::uint32_t>(n + 127) << 23 : 0x00400000u); }

// Degree is the unrolled Horner length: coefficients above a launch's true degree are zero (the
// launcher pads them), which leaves the value of the true degree's Horner unchanged. t <= 127.
template <int Degree>
__device__ __forceinline__ float exp2_poly(float t, const float (&c)[9]) {
#if defined(PSA_EMULATED)
  ::psa::emu::count_exp2();
#endif
  t = fmaxf(t, -127.0f);
  const float n = floorf(t);
  const float f = t - n;
  float p = c[Degree];
#pragma unroll
  for (int d = Degree - 1; d >= 0; --d) p = fmaf(p, f, c[d]);
  return mul_rn(p, exact_pow2(static_cast<int>(n)));
}

}  // namespace psa::gpu
