// Tile shapes and shared-memory layout of the forward kernel, one struct per instantiation
// (FlashAttention 2's Kernel_traits). Everything shape-like the kernel uses comes from here.
#pragma once

namespace psa::gpu {

template <int HeadDim>
struct ForwardTraits {
  static_assert(HeadDim % 16 == 0 && HeadDim >= 16 && HeadDim <= 256, "head dim: a multiple of 16");
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = 64;  // query rows per CTA
  static constexpr int kBlockN = 64;  // keys per step (a layout entry of blockSize keys is blockSize / 64 steps)
  static constexpr int kWarps = 4;    // each owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static_assert(kRowsPerWarp == 16, "one m16 slice per warp");

  // Q's A fragments live in registers for the whole CTA (kQK16 x 4 registers) up to d 128; at
  // d 256 they would not fit beside the 128 O accumulators, so Q stays in shared memory and each
  // k16 step of Q K^T reloads its fragment with ldmatrix.
  static constexpr bool kQInRegisters = HeadDim <= 128;

  // Shared memory: rows of kHeadDim halves padded by 8 (16 bytes) so that the 8 row addresses
  // of an ldmatrix fall in different banks; rows stay 16-byte aligned for cp.async/ldmatrix.
  static constexpr int kPad = 8;
  static constexpr int kStride = kHeadDim + kPad;     // halves per shared row
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kQTileHalves = kBlockM * kStride;
  static constexpr int kKVTileHalves = kBlockN * kStride;
  static_assert(kQTileHalves == kKVTileHalves, "Q, K and V tiles share one shape");

  // One K and one V buffer (FlashAttention 2's pipeline: V_n lands during S = Q K_n^T, K_{n+1}
  // during the softmax and P V of step n). Layout:
  //   Q in registers: K | V, with the Q tile aliased onto V: Q is read into registers before the
  //                   barrier that precedes the first V copy.
  //   Q in shared:    Q | K | V.
  static constexpr int kQOffset = kQInRegisters ? kKVTileHalves : 0;
  static constexpr int kKOffset = kQInRegisters ? 0 : kQTileHalves;
  static constexpr int kVOffset = kKOffset + kKVTileHalves;
  static constexpr int kSmemHalves = kVOffset + kKVTileHalves;
  static constexpr int kSmemBytes = kSmemHalves * 2;  // 18432 for d 64, 34816 for d 128, 101376 for d 256

  // Register tiles per warp: S is 16 x kBlockN (8-column mma tiles), O is 16 x kHeadDim.
  static constexpr int kSTiles = kBlockN / 8;
  static constexpr int kOTiles = kHeadDim / 8;
  static constexpr int kQK16 = kHeadDim / 16;  // k16 steps of Q K^T
  static constexpr int kPV16 = kBlockN / 16;   // k16 steps of P V
};

// The per-block limit of sm_86/89 (99 KB of the SM's 100 KB: 1 KB is reserved per CTA).
static_assert(ForwardTraits<256>::kSmemBytes <= 101376, "d 256 fits one CTA on sm_86/89");
// Two CTAs per SM on sm_86/89 (100 KB per SM, 1 KB reserved per CTA).
static_assert(2 * (ForwardTraits<128>::kSmemBytes + 1024) <= 102400, "d 128 fits two CTAs per SM on sm_86/89");

}  // namespace psa::gpu
