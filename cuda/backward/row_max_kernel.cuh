// The polynomial softmax's row maxima, for the backward's row statistics (prepare.cu): each
// row's maximum kept score m_i in log2 units, as the forward computes it (its walk, its scores,
// its kept test), one CTA per 64-row query tile.
#pragma once

#include <cstdint>

#include "backward_tile.cuh"
#include "backward_traits.h"

namespace psa::gpu {

template <typename Traits, MmaType T, bool Causal>
__global__ void __launch_bounds__(Traits::kThreads) attention_backward_row_max_kernel(const ForwardParams p, float* __restrict__ rowMax) {
  using Tr = Traits;
  constexpr int kN = Tr::kBlockN;
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  std::uint16_t* const sQ = smem;
  std::uint16_t* const sK = smem + Tr::kTileHalves;
  const Shape& sh = p.shape;
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = static_cast<int>(blockIdx.x) * Tr::kBlockM;
  const int kvh = h / (sh.heads / sh.kvHeads);
  const std::uint16_t* kBase = p.k + offset_of(p.kStrides, b, kvh, 0);
  const bool vec = vector_rows(sh.headDim, p.qStrides, p.q) && vector_rows(sh.headDim, p.kStrides, p.k);
  const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);
  load_tile<Tr>(sQ, p.q + offset_of(p.qStrides, b, h, 0), p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
  cp_async_commit();
  QFragments<Tr, false> qf;
  qf.load(sQ, warp, lane);
  float tau[2];
  float mx[2] = {-INFINITY, -INFINITY};
  const long long rowBase = (static_cast<long long>(b) * sh.heads + h) * sh.seqQ;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = m0 + warp * 16 + g + 8 * r;
    tau[r] = p.threshold != nullptr && row < sh.seqQ ? p.threshold[rowBase + row] : -INFINITY;
  }
  const float scaleLog2 = p.scale * fwd::kLog2e;
  for (int n = 0; n < walk.total; ++n) {
    const KeyTile tile = walk.at(n);
    __syncthreads();  // every warp is done with K_{n-1}
    load_tile<Tr>(sK, kBase, p.kStrides.row, tile.index * kN, sh.seqK, sh.headDim, vec);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[Tr::kSTiles][4];
    qk_scores<T>(s, qf, sK, 0, lane);
#pragma unroll
    for (int n8 = 0; n8 < Tr::kSTiles; ++n8) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        const int key = tile.index * kN + n8 * 8 + 2 * t + (i & 1);
        if (bwd::kept<Causal>(p, tile, m0 + warp * 16 + g + 8 * r, key, s[n8][i], tau[r])) mx[r] = fmaxf(mx[r], s[n8][i] * scaleLog2);
      }
    }
  }
  cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m = mx[r];
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    const int row = m0 + warp * 16 + g + 8 * r;
    if (t == 0 && row < sh.seqQ) rowMax[rowBase + row] = m;
  }
}

}  // namespace psa::gpu
