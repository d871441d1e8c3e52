// Tile shapes and shared-memory layout of the forward kernel, one struct per instantiation
// (FlashAttention 2's Kernel_traits). Everything shape-like the kernel uses comes from here.
#pragma once

namespace psa::gpu {

template <int HeadDim>
struct ForwardTraits {
  static_assert(HeadDim % 16 == 0 && HeadDim >= 16 && HeadDim <= 256, "head dim: a multiple of 16");
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = 64;             // query rows per CTA
  static constexpr int kBlockN = 64;             // keys per step (= the layout block size)
  static constexpr int kWarps = 4;               // each owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static_assert(kRowsPerWarp == 16, "one m16 slice per warp");

  // Shared memory: rows of kHeadDim halves padded by 8 (16 bytes) so that the 8 row addresses
  // of an ldmatrix fall in different banks; rows stay 16-byte aligned for cp.async/ldmatrix.
  static constexpr int kPad = 8;
  static constexpr int kStride = kHeadDim + kPad;  // halves per shared row
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kQTileHalves = kBlockM * kStride;
  static constexpr int kKVTileHalves = kBlockN * kStride;
  static constexpr int kStages = 2;  // K and V double-buffered
  // Layout: K stage 0 | K stage 1 | V stage 0 | V stage 1, with Q aliased onto V stage 1: Q is
  // read into registers once, before the first prefetch into stage 1 (a barrier between).
  static constexpr int kKOffset = 0;
  static constexpr int kVOffset = kKOffset + kStages * kKVTileHalves;
  static constexpr int kQOffset = kVOffset + kKVTileHalves;
  static_assert(kQTileHalves <= kKVTileHalves, "Q fits in the V stage it shares");
  static constexpr int kSmemHalves = kVOffset + kStages * kKVTileHalves;
  static constexpr int kSmemBytes = kSmemHalves * 2;  // 36864 for d 64, 69632 for d 128

  // Register tiles per warp: S is 16 x kBlockN (8-column mma tiles), O is 16 x kHeadDim.
  static constexpr int kSTiles = kBlockN / 8;
  static constexpr int kOTiles = kHeadDim / 8;
  static constexpr int kQK16 = kHeadDim / 16;  // k16 steps of Q K^T
  static constexpr int kPV16 = kBlockN / 16;   // k16 steps of P V
};

}  // namespace psa::gpu
