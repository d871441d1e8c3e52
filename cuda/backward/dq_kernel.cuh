// dQ of the backward pass: one CTA per (64-row query tile, query head, batch), 4 warps of 16
// rows, walking the very key tiles the forward visited (key_tiles.cuh) with their flags:
//   S = Q K^T     scores.cuh, the forward's scores bit for bit (so top-k keeps the same keys);
//   dP = dO V^T   the same function with dO for Q and V for K;
//   dS = E'(x - shift) / Z (dP - delta) on the forward's kept scores (backward_tile.cuh);
//   dQ += dS K    dS rounded to 16 bits in registers as the A operand, K read transposed;
// dQ = scale dQ at the end, in float32. A separate pass rather than atomic adds from the dK, dV
// kernel: every dq element is one thread's sum in a fixed order, so gradients are deterministic.
#pragma once

#include "backward_tile.cuh"
#include "backward_traits.h"

namespace psa::gpu {

template <typename Traits, MmaType T, bool Causal, int PolyDegree>
__global__ void __launch_bounds__(Traits::kThreads, 1) attention_backward_dq_kernel(const BackwardParams bp) {
  using Tr = Traits;
  constexpr int kN = Tr::kBlockN;
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  std::uint16_t* const sQ = smem + Tr::kQOffset;
  std::uint16_t* const sDO = smem + Tr::kDOOffset;
  std::uint16_t* const sK = smem + Tr::kKOffset;
  std::uint16_t* const sV = smem + Tr::kVOffset;

  const ForwardParams& p = bp.fwd;
  const Shape& sh = p.shape;
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = static_cast<int>(blockIdx.x) * Tr::kBlockM;
  const int kvh = h / (sh.heads / sh.kvHeads);

  const std::uint16_t* kBase = p.k + offset_of(p.kStrides, b, kvh, 0);
  const std::uint16_t* vBase = p.v + offset_of(p.vStrides, b, kvh, 0);
  const bool vec = vector_rows(sh.headDim, p.qStrides, p.q) && vector_rows(sh.headDim, p.kStrides, p.k) && vector_rows(sh.headDim, p.vStrides, p.v) &&
                   vector_rows(sh.headDim, p.qStrides, bp.dO);
  const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);

  load_tile<Tr>(sQ, p.q + offset_of(p.qStrides, b, h, 0), p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
  load_tile<Tr>(sDO, bp.dO + offset_of(p.qStrides, b, h, 0), p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
  cp_async_commit();

  float coef[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) coef[i] = p.polyCoefficients[i];
  RowStats rs[2];
  float tau[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = m0 + warp * 16 + g + 8 * r;
    const long long at = (static_cast<long long>(b) * sh.heads + h) * sh.seqQ + row;
    rs[r] = row < sh.seqQ ? bp.rows[at] : RowStats{0.0f, 0.0f, 0.0f};
    tau[r] = p.threshold != nullptr && row < sh.seqQ ? p.threshold[at] : -INFINITY;
  }
  const float scaleLog2 = p.scale * fwd::kLog2e;

  cp_async_wait<0>();
  __syncthreads();
  QFragments<Tr, false> qf, dof;
  qf.load(sQ, warp, lane);
  dof.load(sDO, warp, lane);

  float dq[Tr::kDTiles][4];
#pragma unroll
  for (int d8 = 0; d8 < Tr::kDTiles; ++d8) dq[d8][0] = dq[d8][1] = dq[d8][2] = dq[d8][3] = 0.0f;

  for (int n = 0; n < walk.total; ++n) {
    const KeyTile tile = walk.at(n);
    __syncthreads();  // every warp is done with K_{n-1}, V_{n-1}
    load_tile<Tr>(sK, kBase, p.kStrides.row, tile.index * kN, sh.seqK, sh.headDim, vec);
    load_tile<Tr>(sV, vBase, p.vStrides.row, tile.index * kN, sh.seqK, sh.headDim, vec);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    float s[Tr::kSTiles][4], dp[Tr::kSTiles][4];
    qk_scores<T>(s, qf, sK, 0, lane);
    qk_scores<T>(dp, dof, sV, 0, lane);
    // dS in place of S. Element i of tile n8: row g + 8 (i >> 1), key 2t + (i & 1).
#pragma unroll
    for (int n8 = 0; n8 < Tr::kSTiles; ++n8) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        const int row = m0 + warp * 16 + g + 8 * r;
        const int key = tile.index * kN + n8 * 8 + 2 * t + (i & 1);
        float P, slope;
        bwd::probability<PolyDegree>(s[n8][i] * scaleLog2, rs[r], coef, P, slope);
        const bool keep = bwd::kept<Causal>(p, tile, row, key, s[n8][i], tau[r]);
        s[n8][i] = keep ? slope * (dp[n8][i] - rs[r].delta) : 0.0f;
      }
    }
    std::uint32_t a[Tr::kInner16][4];
#pragma unroll
    for (int kk = 0; kk < Tr::kInner16; ++kk) bwd::pack_fragment<T>(a[kk], s[2 * kk], s[2 * kk + 1]);
    bwd::accumulate_ab<T, Tr, Tr::kInner16>(dq, a, sK, lane);
  }

  bwd::store_rows<Tr>(bp.dq + offset_of(p.qStrides, b, h, 0), p.qStrides.row, m0 + warp * 16, sh.seqQ, sh.headDim, dq, p.scale, lane);
}

}  // namespace psa::gpu
