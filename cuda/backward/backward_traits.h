// Tile shapes and shared-memory layout of the backward kernels, one struct per head dim. The
// tiles are the forward's (tile_shape.h: 64 x 64, 4 warps of 16 rows, padded shared rows), so
// that the scores are computed by the forward's own function on the forward's padded tiles.
#pragma once

#include "../attention/tile_shape.h"

namespace psa::gpu {

template <int HeadDim>
struct BackwardTraits : TileShape<HeadDim> {
  using Tile = TileShape<HeadDim>;
  static_assert(HeadDim <= 128, "the dK and dV accumulators of d 256 do not fit the registers of one warp per 16 keys");

  // dK, dV kernel (one CTA per 64-key tile): K | V stay for the CTA; Q | dO per query tile.
  // Every operand is read from shared memory by ldmatrix at each use: at d 128 the 2 x 64 dK,
  // dV accumulators per thread leave no room for resident fragments.
  static constexpr int kKOffset = 0;
  static constexpr int kVOffset = Tile::kTileHalves;
  static constexpr int kQOffset = 2 * Tile::kTileHalves;
  static constexpr int kDOOffset = 3 * Tile::kTileHalves;
  static constexpr int kTileBytes = 4 * Tile::kTileHalves * 2;
  // Then, per query row of the tile, its RowStats and top-k threshold (4 floats).
  static constexpr int kRowFloats = 4;
  static constexpr int kDkdvSmemBytes = kTileBytes + Tile::kBlockM * kRowFloats * 4;  // 37888 at d 64, 70656 at d 128

  // dQ kernel (one CTA per 64-row query tile, the forward's walk): Q | dO stay, K | V per key tile.
  static constexpr int kDqSmemBytes = kTileBytes;  // 36864 at d 64, 69632 at d 128

  // Row maxima kernel (polynomial softmax; one CTA per query tile, the forward's walk): Q | K.
  static constexpr int kRowMaxSmemBytes = 2 * Tile::kTileHalves * 2;

  // Query rows of a tile the dK, dV kernel takes per pass: S^T and dP^T of more rows beside the
  // 2 x (HeadDim / 4) dK, dV accumulators per thread spill at d 128.
  static constexpr int kRowsPerPass = HeadDim <= 64 ? 32 : 16;

  static constexpr int kDTiles = HeadDim / 8;       // 8-column mma tiles of dK, dV, dQ
  static constexpr int kInner16 = Tile::kBlockN / 16;  // k16 steps over the 64 rows (or keys) of a tile
};

// Two dK, dV CTAs per SM at d 64 and one at d 128 on sm_86/89 (100 KB per SM, 1 KB reserved per CTA).
static_assert(2 * (BackwardTraits<64>::kDkdvSmemBytes + 1024) <= 102400, "d 64: two CTAs per SM");
static_assert(BackwardTraits<128>::kDkdvSmemBytes + 1024 <= 102400, "d 128: one CTA per SM");

}  // namespace psa::gpu
