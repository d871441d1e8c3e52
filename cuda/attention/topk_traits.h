// Tile shapes and shared-memory layout of the top-k threshold kernel (topk_kernel.cuh), one
// struct per instantiation. Everything shape-like the kernel uses comes from here.
#pragma once

#include <cstdint>

namespace psa::gpu {

template <int HeadDim>
struct TopkTraits {
  static_assert(HeadDim == 64 || HeadDim == 128 || HeadDim == 256, "head dim: zero-padded to 64, 128 or 256");
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = 64;  // query rows per CTA (the forward kernel's query tile)
  static constexpr int kBlockN = 64;  // keys per step (the forward kernel's key tile)
  static constexpr int kWarps = 4;    // each owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static_assert(kRowsPerWarp == 16, "one m16 slice per warp");

  // Radix select: 8-bit digits of a 32-bit key, most significant first.
  static constexpr int kDigitBits = 8;
  static constexpr int kBins = 1 << kDigitBits;
  static constexpr int kPasses = 32 / kDigitBits;

  // Shared rows of kHeadDim halves padded by 8 (16 bytes): the 8 row addresses of an ldmatrix
  // fall in different banks, rows stay 16-byte aligned for cp.async/ldmatrix.
  static constexpr int kPad = 8;
  static constexpr int kStride = kHeadDim + kPad;      // halves per shared row
  static constexpr int kChunksPerRow = kHeadDim / 8;   // 16-byte chunks per row
  static constexpr int kQTileBytes = kBlockM * kStride * 2;
  static constexpr int kKTileBytes = kBlockN * kStride * 2;
  // K double-buffered where it fits beside the histograms in 99 KB; d 256 single-buffered.
  static constexpr int kStages = HeadDim <= 128 ? 2 : 1;

  // Layout (bytes): histograms | K stages | row state. Histogram counters are 32-bit: a bin can
  // count every key of a row (seqK may exceed 65535). Q is staged once through the histogram
  // region, before its first zeroing (a barrier between).
  static constexpr int kHistOffset = 0;
  static constexpr int kHistBytes = kBlockM * kBins * 4;  // 65536
  static constexpr int kKOffset = kHistOffset + kHistBytes;
  static constexpr int kQOffset = kHistOffset;
  static_assert(kQTileBytes <= kHistBytes, "Q fits in the histogram region it shares");
  // Row state: the key prefix chosen so far (uint32) and the rank still wanted inside it
  // (uint32, 0: row finished with tau = -inf), one of each per row; then one flag word.
  static constexpr int kPrefixOffset = kKOffset + kStages * kKTileBytes;
  static constexpr int kRemOffset = kPrefixOffset + kBlockM * 4;
  static constexpr int kFlagOffset = kRemOffset + kBlockM * 4;
  static constexpr int kSmemBytes = kFlagOffset + 16;  // 84496 (d 64), 100880 (d 128), 99856 (d 256)
  static_assert(kSmemBytes <= 101376, "fits the sm_86/sm_89 per-block limit of 99 KB");

  static constexpr int kSTiles = kBlockN / 8;   // 8-key mma tiles per key tile
  static constexpr int kQK16 = kHeadDim / 16;   // k16 steps of Q K^T
};

}  // namespace psa::gpu
