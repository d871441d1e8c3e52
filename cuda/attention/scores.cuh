// S = Q K^T for one warp's query rows (one or more m16 slices) on Tensor Cores: the one scores
// function of the forward and top-k kernels. The top-k threshold of a row is one of the very floats the forward compares
// against (`score >= tau`), so both kernels must compute every score by this same instruction
// sequence: the accumulator starts at 0.0f and takes, for k16 = 0, 1, ..., kQK16 - 1 in
// ascending order, one mma_m16n8k16 of the Q and K fragments of zero-padded tiles (tile_load.cuh,
// head dim padded by padded_head_dim); the score is then score_of(accumulator, scale), one
// rounded multiply. Which accumulators are computed together does not matter (each is its own
// chain), so the kernels may take different numbers of 8-key tiles or of row slices per call.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "bits.cuh"

namespace psa::gpu {

// The A fragments of 16 rows of the shared Q tile, for every k16 step: loaded into registers
// once (InRegisters), or read again from shared memory at each step.
template <typename Tile, bool InRegisters>
struct QFragments {
  using Fragment = std::uint32_t[4];
  Fragment regs[InRegisters ? Tile::kQK16 : 1];
  const std::uint16_t* row;  // this lane's ldmatrix row address in the tile, at channel 0

  // Rows firstRow .. firstRow + 15 of the tile; sQ must hold it (its copies landed and a barrier passed).
  __device__ __forceinline__ void load_rows(const std::uint16_t* sQ, int firstRow, int lane) {
    const int lm = lane >> 3, lr = lane & 7;  // matrix (rows +8, channels +8) whose row this lane addresses, and the row
    row = sQ + (firstRow + lr + 8 * (lm & 1)) * Tile::kStride + 8 * (lm >> 1);
    if constexpr (InRegisters) {
#pragma unroll
      for (int k16 = 0; k16 < Tile::kQK16; ++k16) ldmatrix<4, false>(regs[k16], row + k16 * 16);
    }
  }
  // The 16 rows of warp `warp` in a tile of one slice per warp.
  __device__ __forceinline__ void load(const std::uint16_t* sQ, int warp, int lane) { load_rows(sQ, warp * 16, lane); }

  // The fragment of step k16: held, or read into `scratch`.
  __device__ __forceinline__ const Fragment& at(int k16, Fragment& scratch) const {
    if constexpr (InRegisters) {
      return regs[k16];
    } else {
      ldmatrix<4, false>(scratch, row + k16 * 16);
      return scratch;
    }
  }
};

// s[sl][n][i] = the raw score of slice sl's row g + 8 (i >> 1) (g = lane >> 2) and key
// (n8First + n) * 8 + 2 (lane & 3) + (i & 1) of the shared K tile sK, for n < NTiles: each K
// fragment is read once for all the slices.
template <MmaType T, typename Tile, bool QInRegisters, int Slices, int NTiles>
__device__ __forceinline__ void qk_scores(float (&s)[Slices][NTiles][4], const QFragments<Tile, QInRegisters> (&q)[Slices], const std::uint16_t* sK, int n8First,
                                          int lane) {
  static_assert(NTiles % 2 == 0, "K fragments come two 8-key tiles per ldmatrix.x4");
  const int lm = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int sl = 0; sl < Slices; ++sl) {
#pragma unroll
    for (int n = 0; n < NTiles; ++n) s[sl][n][0] = s[sl][n][1] = s[sl][n][2] = s[sl][n][3] = 0.0f;
  }
#pragma unroll
  for (int k16 = 0; k16 < Tile::kQK16; ++k16) {
    std::uint32_t a[Slices][4];  // copies of held fragments are register moves the compiler elides
#pragma unroll
    for (int sl = 0; sl < Slices; ++sl) {
      std::uint32_t scratch[4];
      const std::uint32_t(&f)[4] = q[sl].at(k16, scratch);
#pragma unroll
      for (int i = 0; i < 4; ++i) a[sl][i] = f[i];
    }
#pragma unroll
    for (int n = 0; n < NTiles; n += 2) {
      // Matrices: (keys n, channels lo), (keys n, channels hi), (keys n+1, lo), (keys n+1, hi).
      std::uint32_t kf[4];
      ldmatrix<4, false>(kf, sK + ((n8First + n + (lm >> 1)) * 8 + lr) * Tile::kStride + k16 * 16 + 8 * (lm & 1));
      const std::uint32_t b0[2] = {kf[0], kf[1]};
      const std::uint32_t b1[2] = {kf[2], kf[3]};
#pragma unroll
      for (int sl = 0; sl < Slices; ++sl) {
        mma_m16n8k16<T>(s[sl][n], a[sl], b0, s[sl][n]);
        mma_m16n8k16<T>(s[sl][n + 1], a[sl], b1, s[sl][n + 1]);
      }
    }
  }
}

// One slice: s[n][i] for the 16 rows of q.
template <MmaType T, typename Tile, bool QInRegisters, int NTiles>
__device__ __forceinline__ void qk_scores(float (&s)[NTiles][4], const QFragments<Tile, QInRegisters>& q, const std::uint16_t* sK, int n8First, int lane) {
  qk_scores<T>(reinterpret_cast<float(&)[1][NTiles][4]>(s), reinterpret_cast<const QFragments<Tile, QInRegisters>(&)[1]>(q), sK, n8First, lane);
}

// The score s_ij of a raw accumulator.
__device__ __forceinline__ float score_of(float raw, float scale) { return mul_rn(raw, scale); }

}  // namespace psa::gpu
