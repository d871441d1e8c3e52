// The pieces both backward kernels compute per (query row, key) and per tile, in one place:
// which scores the forward kept (its element rule, its top-k comparison, on its scores), the
// probability and the score gradient from the pre-pass's row statistics, and the product
// Acc += A B of a register A operand and a shared 64-row B tile.
#pragma once

#include <cstdint>

#include "../attention/element_mask.cuh"
#include "../attention/forward_kernel.cuh"
#include "../attention/key_tiles.cuh"
#include "../attention/scores.cuh"
#include "backward_params.h"

namespace psa::gpu {
namespace bwd {

// Whether the forward kept the score `raw` (an accumulator of qk_scores) of query row `row` and
// key `key` in `tile`: the forward kernel's own tests, in its order (docs/backward.md: the kept
// sets are constants of the backward).
template <bool Causal>
__device__ __forceinline__ bool kept(const ForwardParams& p, const KeyTile& tile, int row, int key, float raw, float tau) {
  const Shape& sh = p.shape;
  bool keep = row < sh.seqQ;
  if (tile.elementMask) keep = keep && element_allowed(p.mask, Causal, sh.seqK, static_cast<long long>(row) + sh.seqK - sh.seqQ, key, tile.selected);
  if (p.threshold != nullptr) keep = keep && score_of(raw, p.scale) >= tau;
  return keep;
}

// E'(x) / log2 e for the polynomial: p'(f) 2^n with t = x (log2 units), n = floor(t), f = t - n;
// 0 below the clamp t < -127, where E is constant.
template <int Degree>
__device__ __forceinline__ float exp2_poly_slope(float t, const float (&c)[9]) {
  if (!(t >= -127.0f)) return 0.0f;
  const float n = floorf(t);
  const float f = t - n;
  float d = Degree * c[Degree];
#pragma unroll
  for (int k = Degree - 1; k >= 1; --k) d = fmaf(d, f, k * c[k]);
  return mul_rn(d, exact_pow2(static_cast<int>(n)));
}

// P and dS / (dP - delta) of one kept score, x in log2 units (x = raw * scale * log2 e), for the
// row statistics of prepare.cu. Exact exp: both are exp2(x - LSE log2 e). The
// polynomial: E(x - m) / Z and E'(x - m) / Z, E' its own derivative with respect to the score.
template <int PolyDegree>
__device__ __forceinline__ void probability(float x, const RowStats& r, const float (&c)[9], float& P, float& slope) {
  if constexpr (PolyDegree == 0) {
    P = exp2f(x - r.shift) * r.invZ;
    slope = P;
  } else {
    P = exp2_poly<PolyDegree>(x - r.shift, c) * r.invZ;
    slope = fwd::kLog2e * exp2_poly_slope<PolyDegree>(x - r.shift, c) * r.invZ;
  }
}

// acc[d8] += A B for a warp: A the warp's 16 rows x (16 Steps) columns held as Steps A fragments,
// B the shared tile's rows from sB on (16 Steps of them, kStride halves apart, kHeadDim
// columns), read transposed by ldmatrix as the forward reads V for P V.
template <MmaType T, typename Tr, int Steps>
__device__ __forceinline__ void accumulate_ab(float (&acc)[Tr::kDTiles][4], const std::uint32_t (&a)[Steps][4], const std::uint16_t* sB, int lane) {
  const int lm = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < Steps; ++kk) {
#pragma unroll
    for (int d8 = 0; d8 < Tr::kDTiles; d8 += 2) {
      std::uint32_t bf[4];
      ldmatrix<4, true>(bf, sB + (kk * 16 + 8 * (lm & 1) + lr) * Tr::kStride + (d8 + (lm >> 1)) * 8);
      const std::uint32_t b0[2] = {bf[0], bf[1]};
      const std::uint32_t b1[2] = {bf[2], bf[3]};
      mma_m16n8k16<T>(acc[d8], a[kk], b0, acc[d8]);
      mma_m16n8k16<T>(acc[d8 + 1], a[kk], b1, acc[d8 + 1]);
    }
  }
}

// The A fragment of step kk from two adjacent 8-column accumulator tiles (the forward's P V trick).
template <MmaType T>
__device__ __forceinline__ void pack_fragment(std::uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = fwd::pack2<T>(lo[0], lo[1]);
  a[1] = fwd::pack2<T>(lo[2], lo[3]);
  a[2] = fwd::pack2<T>(hi[0], hi[1]);
  a[3] = fwd::pack2<T>(hi[2], hi[3]);
}

// Stores a warp's 16 x headDim float32 accumulators, times `scale`, to rows row0 + g, row0 + g + 8.
template <typename Tr>
__device__ __forceinline__ void store_rows(float* base, long long rowStride, int row0, int rowEnd, int headDim, const float (&acc)[Tr::kDTiles][4], float scale, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + g + 8 * r;
    if (row >= rowEnd) continue;
    float* out = base + static_cast<long long>(row) * rowStride;
#pragma unroll
    for (int d8 = 0; d8 < Tr::kDTiles; ++d8) {
      const int col = d8 * 8 + 2 * t;
      if (col < headDim) out[col] = acc[d8][2 * r] * scale;
      if (col + 1 < headDim) out[col + 1] = acc[d8][2 * r + 1] * scale;
    }
  }
}

}  // namespace bwd
}  // namespace psa::gpu
