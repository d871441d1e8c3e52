// Global -> shared copies of one tile of Q (kBlockM rows), K or V (kBlockN rows), shared by the
// forward and top-k kernels, with the zero padding their scores rely on (scores.cuh).
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "shape.h"

namespace psa::gpu {

// 16-byte cp.async copies need 16-byte aligned rows: the tensor's strides and its base pointer
// multiples of 8 elements (16 bytes). The copies then read each row up to the next multiple of
// 8 past headDim, which such strides leave inside the row: a head dim that is not a multiple of
// 8 has them only as a copy whose rows are zero-padded to one (run.cu pads every input so), and
// an unpadded tensor of that head dim has a stride of headDim itself.
__device__ __forceinline__ bool vector_rows(int headDim, const Strides& s, const std::uint16_t* base) {
  (void)headDim;
  return (s.row | s.head | s.batch) % 8 == 0 && (reinterpret_cast<std::uintptr_t>(base) & 15) == 0;
}

// Copy rows [row0, row0 + Rows) of a [rows x headDim] matrix (rows `rowStride` elements
// apart) into a shared tile of kStride-half rows. Rows at or past `rowEnd` and columns at or
// past `headDim` (up to kHeadDim) are zero-filled, never read. `vec`: 16-byte cp.async copies
// (vector_rows); else plain loads. Each thread owns one 16-byte column chunk and walks rows
// kRowsPerPass apart with running pointers, so that nothing per row stays live across a
// kernel's main loop (at d 256 the forward's 128 O accumulators leave few registers); the
// plain-load path is not unrolled for the same reason. Rows: kBlockM for a query tile (the
// default), kBlockN for a K or V tile.
template <typename Tile, int Rows = Tile::kBlockM>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const std::uint16_t* src, long long rowStride, int row0, int rowEnd, int headDim, bool vec) {
  static_assert(Tile::kThreads % Tile::kChunksPerRow == 0, "whole rows per pass");
  constexpr int kRowsPerPass = Tile::kThreads / Tile::kChunksPerRow;
  static_assert(Rows % kRowsPerPass == 0, "whole passes per tile");
  constexpr int kPasses = Rows / kRowsPerPass;
  const int tid = static_cast<int>(threadIdx.x);
  const int col = (tid % Tile::kChunksPerRow) * 8;
  const int r0 = tid / Tile::kChunksPerRow;
  std::uint16_t* d = dst + r0 * Tile::kStride + col;
  const std::uint16_t* s = src + static_cast<long long>(row0 + r0) * rowStride + col;
  const int rows = col < headDim ? (rowEnd - row0 - r0 < Rows ? rowEnd - row0 - r0 : Rows) : 0;  // passes it < rows / kRowsPerPass copy
  uint4 z;
  z.x = z.y = z.z = z.w = 0u;
  if (vec) {
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      if (it * kRowsPerPass < rows) {
        cp_async_16(d, s);
      } else {
        st(reinterpret_cast<uint4*>(d), z);
      }
      d += kRowsPerPass * Tile::kStride;
      s += kRowsPerPass * rowStride;
    }
  } else {
#pragma unroll 1
    for (int it = 0; it < kPasses; ++it) {
      if (it * kRowsPerPass < rows) {
        for (int e = 0; e < 8; ++e) st(d + e, ld_if(col + e < headDim, s + e, std::uint16_t(0)));
      } else {
        st(reinterpret_cast<uint4*>(d), z);
      }
      d += kRowsPerPass * Tile::kStride;
      s += kRowsPerPass * rowStride;
    }
  }
}

}  // namespace psa::gpu
