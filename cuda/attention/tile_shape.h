// The tile shape the forward and top-k kernels share: 64 query rows per CTA (the forward also
// runs 128, see ForwardTraits), 4 warps of 16 rows each (32 at 128 rows), 64 keys per step (32 at
// d 256), shared rows of the padded head dim plus 8 halves. Both kernels
// must pad a head dim alike (padded_head_dim) and walk the same tiles: the top-k thresholds are
// right only while its scores are the forward's, bit for bit (scores.cuh).
#pragma once

namespace psa::gpu {

// The head dim an instantiation computes with (zero-padded): 64, 128 or 256; 0 outside 1..256.
constexpr int padded_head_dim(int headDim) { return headDim < 1 || headDim > 256 ? 0 : headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256; }

// Layout block sizes are multiples of this many keys: whole key steps of every instantiation.
constexpr int kLayoutKeyUnit = 64;

template <int HeadDim, int BlockM = 64>
struct TileShape {
  static_assert(HeadDim == 64 || HeadDim == 128 || HeadDim == 256, "head dim: zero-padded to 64, 128 or 256");
  static_assert(BlockM == 64 || BlockM == 128, "query tiles of 64 or 128 rows");
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = BlockM;  // query rows per CTA
  // Keys per step (a layout entry of blockSize keys is blockSize / kBlockN steps). 32 at d 256:
  // K and V tiles of 32 rows halve the shared memory beside the 64-row Q tile, so that two CTAs
  // fit an SM of 164 KB (sm_80) and the 16 x 32 S tile leaves registers to the 128 O accumulators.
  // 32 at d 128 with 128 rows too: a warp's two slices hold 128 O accumulators a lane, and two
  // 16 x 64 S tiles beside them would not fit 255 registers. Scores do not depend on the step.
  static constexpr int kBlockN = HeadDim == 256 || (HeadDim == 128 && BlockM == 128) ? 32 : 64;
  static constexpr int kWarps = 4;  // each owns kRowsPerWarp query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static constexpr int kSlices = kRowsPerWarp / 16;  // m16 row slices a warp computes, each K and V fragment serving all
  static_assert(kRowsPerWarp % 16 == 0, "whole m16 slices per warp");
  static_assert(kLayoutKeyUnit % kBlockN == 0, "a layout entry is whole key steps");

  // Shared rows of kHeadDim halves padded by 8 (16 bytes), so that the 8 row addresses of an
  // ldmatrix fall in different banks; rows stay 16-byte aligned for cp.async and ldmatrix.
  static constexpr int kPad = 8;
  static constexpr int kStride = kHeadDim + kPad;     // halves per shared row
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kTileHalves = kBlockM * kStride;     // a query tile (kBlockM rows)
  static constexpr int kKeyTileHalves = kBlockN * kStride;  // a K or V tile (kBlockN rows)

  static constexpr int kSTiles = kBlockN / 8;  // 8-key mma tiles per key tile
  static constexpr int kQK16 = kHeadDim / 16;  // k16 steps of Q K^T
};

}  // namespace psa::gpu
