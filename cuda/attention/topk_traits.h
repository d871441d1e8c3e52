// Shared-memory layout of the top-k threshold kernel (topk_kernel.cuh), one struct per
// instantiation, on the TileShape it shares with the forward kernel.
#pragma once

#include "tile_shape.h"

namespace psa::gpu {

template <int HeadDim>
struct TopkTraits : TileShape<HeadDim> {
  using Tile = TileShape<HeadDim>;
  // Radix select: 8-bit digits of a 32-bit key, most significant first.
  static constexpr int kDigitBits = 8;
  static constexpr int kBins = 1 << kDigitBits;
  static constexpr int kPasses = 32 / kDigitBits;

  static constexpr int kTileBytes = Tile::kKeyTileHalves * 2;  // one K stage
  // K double-buffered where it fits beside the histograms in 99 KB. d 256 single-buffered: its
  // 32-key stage then leaves room for two CTAs per SM on sm_80 (164 KB), which hide each other's
  // copies better than a second stage would inside one.
  static constexpr int kStages = HeadDim <= 128 ? 2 : 1;

  // Layout (bytes): histograms | K stages | row state. Histogram counters are 32-bit: a bin can
  // count every key of a row (seqK may exceed 65535). Q is staged once through the histogram
  // region, before its first zeroing (a barrier between).
  static constexpr int kHistOffset = 0;
  static constexpr int kHistBytes = Tile::kBlockM * kBins * 4;  // 65536
  static constexpr int kKOffset = kHistOffset + kHistBytes;
  static constexpr int kQOffset = kHistOffset;
  static_assert(Tile::kTileHalves * 2 <= kHistBytes, "Q fits in the histogram region it shares");
  // Row state: the key prefix chosen so far (uint32) and the rank still wanted inside it
  // (uint32, 0: row finished with tau = -inf), one of each per row.
  static constexpr int kPrefixOffset = kKOffset + kStages * kTileBytes;
  static constexpr int kRemOffset = kPrefixOffset + Tile::kBlockM * 4;
  static constexpr int kSmemBytes = kRemOffset + Tile::kBlockM * 4;  // 84480 (d 64), 100864 (d 128), 82944 (d 256)
  static_assert(kSmemBytes + 1024 <= 100 * 1024, "fits the sm_86/sm_89 per-block limit of 99 KB");
  static_assert(HeadDim != 256 || 2 * (kSmemBytes + 1024) <= 164 * 1024, "d 256: two CTAs per SM on sm_80 (1 KB reserved per CTA)");
};

}  // namespace psa::gpu
