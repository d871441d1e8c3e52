// dK and dV of the backward pass, FlashAttention 2 style: one CTA per (64-key tile, kv head,
// batch), 4 warps of 16 keys, dK and dV in registers for the whole CTA. It walks, for each query
// head of the kv group in turn (so the group's sum is one fixed order: deterministic), the query
// tiles whose forward visited this key tile: with a layout, those the transposed layout lists
// (prepare.cu), each with the flags the forward's walk gives it (key_tiles.cuh); dense,
// every query tile whose walk reaches the tile. Per query tile:
//   S^T = K Q^T, dP^T = V dO^T   scores.cuh with K (or V) in the place of Q: the same products
//                                in the same order as the forward's S = Q K^T;
//   P^T, dS^T                    backward_tile.cuh on the forward's kept scores;
//   dV += P^T dO, dK += dS^T Q   P^T and dS^T rounded to 16 bits in registers as A operands.
// dK = scale dK at the end; both float32.
#pragma once

#include "backward_tile.cuh"
#include "backward_traits.h"

namespace psa::gpu {
namespace bwd {

// Calls visit(m0, tile) for every query tile (first row m0) whose forward visited key tile kt
// of head h, with the KeyTile the forward's walk gave it, in ascending m0.
template <typename Tr, bool Causal, typename Visit>
__device__ __forceinline__ void for_each_query_tile(const BackwardParams& bp, int b, int h, int kt, Visit&& visit) {
  const ForwardParams& p = bp.fwd;
  const Shape& sh = p.shape;
  if (p.layoutOffsets == nullptr) {
    for (int m0 = 0; m0 < sh.seqQ; m0 += Tr::kBlockM) {
      const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);
      if (kt < walk.total) visit(m0, walk.at(kt));
    }
    return;
  }
  const int perEntry = p.blockSize / Tr::kBlockN;
  const int J = kt / perEntry;
  const int numKeyBlocks = (sh.seqK + p.blockSize - 1) / p.blockSize;
  const long long c = (static_cast<long long>(b) * sh.heads + h) * numKeyBlocks + J;
  for (int e = bp.tOffsets[c]; e < bp.tOffsets[c + 1]; ++e) {
    const int firstRow = bp.tQueryBlocks[e] * p.blockSize;
    const int entry = bp.tEntries[e];
    for (int m0 = firstRow; m0 < firstRow + p.blockSize && m0 < sh.seqQ; m0 += Tr::kBlockM) {
      const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);
      visit(m0, walk.at((entry - walk.entry0) * perEntry + kt - J * perEntry));
    }
  }
}

}  // namespace bwd

template <typename Traits, MmaType T, bool Causal, int PolyDegree>
__global__ void __launch_bounds__(Traits::kThreads) attention_backward_dkdv_kernel(const BackwardParams bp) {
  using Tr = Traits;
  constexpr int kN = Tr::kBlockN;
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  std::uint16_t* const sK = smem + Tr::kKOffset;
  std::uint16_t* const sV = smem + Tr::kVOffset;
  std::uint16_t* const sQ = smem + Tr::kQOffset;
  std::uint16_t* const sDO = smem + Tr::kDOOffset;
  float* const sRow = reinterpret_cast<float*>(smem + Tr::kTileBytes / 2);  // per query row: shift, invZ, delta, tau

  const ForwardParams& p = bp.fwd;
  const Shape& sh = p.shape;
  const int kt = static_cast<int>(blockIdx.x);
  const int kvh = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int group = sh.heads / sh.kvHeads;
  const bool vec = vector_rows(sh.headDim, p.qStrides, p.q) && vector_rows(sh.headDim, p.kStrides, p.k) && vector_rows(sh.headDim, p.vStrides, p.v) &&
                   vector_rows(sh.headDim, p.qStrides, bp.dO);

  load_tile<Tr>(sK, p.k + offset_of(p.kStrides, b, kvh, 0), p.kStrides.row, kt * kN, sh.seqK, sh.headDim, vec);
  load_tile<Tr>(sV, p.v + offset_of(p.vStrides, b, kvh, 0), p.vStrides.row, kt * kN, sh.seqK, sh.headDim, vec);
  cp_async_commit();
  // K and V as the A operands of S^T and dP^T: the fragments of the warp's 16 keys.
  QFragments<Tr, false> kf, vf;
  kf.load(sK, warp, lane);
  vf.load(sV, warp, lane);

  float coef[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) coef[i] = p.polyCoefficients[i];
  const float scaleLog2 = p.scale * fwd::kLog2e;

  float dk[Tr::kDTiles][4], dv[Tr::kDTiles][4];
#pragma unroll
  for (int d8 = 0; d8 < Tr::kDTiles; ++d8) {
    dk[d8][0] = dk[d8][1] = dk[d8][2] = dk[d8][3] = 0.0f;
    dv[d8][0] = dv[d8][1] = dv[d8][2] = dv[d8][3] = 0.0f;
  }

  for (int gi = 0; gi < group; ++gi) {
    const int h = kvh * group + gi;
    const std::uint16_t* qBase = p.q + offset_of(p.qStrides, b, h, 0);
    const std::uint16_t* dOBase = bp.dO + offset_of(p.qStrides, b, h, 0);
    const long long rowBase = (static_cast<long long>(b) * sh.heads + h) * sh.seqQ;
    bwd::for_each_query_tile<Tr, Causal>(bp, b, h, kt, [&](int m0, const KeyTile& tile) {
      __syncthreads();  // every warp is done with the previous Q, dO and row statistics
      load_tile<Tr>(sQ, qBase, p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
      load_tile<Tr>(sDO, dOBase, p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
      cp_async_commit();
      if (tid < Tr::kBlockM) {
        const int row = m0 + tid;
        const RowStats r = row < sh.seqQ ? bp.rows[rowBase + row] : RowStats{0.0f, 0.0f, 0.0f};
        sRow[4 * tid + 0] = r.shift;
        sRow[4 * tid + 1] = r.invZ;
        sRow[4 * tid + 2] = r.delta;
        sRow[4 * tid + 3] = p.threshold != nullptr && row < sh.seqQ ? p.threshold[rowBase + row] : -INFINITY;
      }
      cp_async_wait<0>();
      __syncthreads();

      // kRowsPerPass query rows at a time (backward_traits.h).
#pragma unroll
      for (int pass = 0; pass < Tr::kBlockM / Tr::kRowsPerPass; ++pass) {
        constexpr int kTiles = Tr::kRowsPerPass / 8;
        float s[kTiles][4], dp[kTiles][4];
        qk_scores<T>(s, kf, sQ, pass * kTiles, lane);
        qk_scores<T>(dp, vf, sDO, pass * kTiles, lane);
        // Element i of tile n8: key g + 8 (i >> 1) of the warp's 16, query row 8 (n8 + kTiles pass) + 2t + (i & 1) of the tile.
#pragma unroll
        for (int n8 = 0; n8 < kTiles; ++n8) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int col = (pass * kTiles + n8) * 8 + 2 * t + (i & 1);
            const int key = kt * kN + warp * 16 + g + 8 * (i >> 1);
            const RowStats r{sRow[4 * col], sRow[4 * col + 1], sRow[4 * col + 2]};
            float P, slope;
            bwd::probability<PolyDegree>(s[n8][i] * scaleLog2, r, coef, P, slope);
            const bool keep = bwd::kept<Causal>(p, tile, m0 + col, key, s[n8][i], sRow[4 * col + 3]);
            s[n8][i] = keep ? P : 0.0f;
            dp[n8][i] = keep ? slope * (dp[n8][i] - r.delta) : 0.0f;
          }
        }
        std::uint32_t pa[kTiles / 2][4], da[kTiles / 2][4];
#pragma unroll
        for (int kk = 0; kk < kTiles / 2; ++kk) {
          bwd::pack_fragment<T>(pa[kk], s[2 * kk], s[2 * kk + 1]);
          bwd::pack_fragment<T>(da[kk], dp[2 * kk], dp[2 * kk + 1]);
        }
        bwd::accumulate_ab<T, Tr, kTiles / 2>(dv, pa, sDO + pass * Tr::kRowsPerPass * Tr::kStride, lane);
        bwd::accumulate_ab<T, Tr, kTiles / 2>(dk, da, sQ + pass * Tr::kRowsPerPass * Tr::kStride, lane);
      }
    });
  }
  cp_async_wait<0>();  // K and V's group when no query tile visited the key tile

  const int key0 = kt * kN + warp * 16;
  bwd::store_rows<Tr>(bp.dk + offset_of(p.kStrides, b, kvh, 0), p.kStrides.row, key0, sh.seqK, sh.headDim, dk, p.scale, lane);
  bwd::store_rows<Tr>(bp.dv + offset_of(p.vStrides, b, kvh, 0), p.vStrides.row, key0, sh.seqK, sh.headDim, dv, 1.0f, lane);
}

}  // namespace psa::gpu
