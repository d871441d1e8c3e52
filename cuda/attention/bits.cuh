// Bit-level helpers every kernel shares, each with the spelling the emulated build needs (the
// CUDA intrinsics exist only under nvcc): float <-> bits, the order-preserving map of floats onto
// unsigned keys that radix select and sort keys rely on, lane bit tricks, and the one multiply
// whose rounding the kernels pin down.
#pragma once

#include <cstdint>
#include <cstring>

#include "../cuda_compat.h"

namespace psa::gpu {

__device__ __forceinline__ std::uint32_t float_bits(float x) {
#if defined(PSA_EMULATED)
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#else
  return __float_as_uint(x);
#endif
}

__device__ __forceinline__ float bits_float(std::uint32_t u) {
#if defined(PSA_EMULATED)
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#else
  return __uint_as_float(u);
#endif
}

// a < b as floats iff ordered_key(a) < ordered_key(b); -0 maps to the key of +0, because the
// comparisons these keys stand for (>=, and the reference's subtraction) call them equal.
__device__ __forceinline__ std::uint32_t ordered_key(float x) {
  const std::uint32_t u = float_bits(x == 0.0f ? 0.0f : x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The float whose ordered_key is `key` (+0 for the key of zero).
__device__ __forceinline__ float ordered_value(std::uint32_t key) { return bits_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key); }

__device__ __forceinline__ int popc(unsigned x) {
#if defined(PSA_EMULATED)
  return __builtin_popcount(x);
#else
  return __popc(x);
#endif
}

// The lowest set bit's index of a nonzero ballot.
__device__ __forceinline__ int lowest_set_lane(unsigned v) {
#if defined(PSA_EMULATED)
  return __builtin_ffs(static_cast<int>(v)) - 1;
#else
  return __ffs(static_cast<int>(v)) - 1;
#endif
}

// x * y rounded once to nearest: never fused into a neighbouring add (the top-k scores and the
// polynomial exp2 must round exactly as their host twins), subnormals kept (the build does not
// flush them: no -ftz, no fast math).
__device__ __forceinline__ float mul_rn(float x, float y) {
#if defined(PSA_EMULATED)
  return x * y;
#else
  return __fmul_rn(x, y);
#endif
}

}  // namespace psa::gpu
