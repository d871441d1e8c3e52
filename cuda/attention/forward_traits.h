// Tile shapes and shared-memory layout of the forward kernel, one struct per instantiation
// (FlashAttention 2's Kernel_traits). Everything shape-like the kernel uses comes from here and
// from the TileShape it shares with the top-k kernel.
#pragma once

#include "tile_shape.h"

namespace psa::gpu {

template <int HeadDim>
struct ForwardTraits : TileShape<HeadDim> {
  using Tile = TileShape<HeadDim>;
  // Q's A fragments live in registers for the whole CTA (kQK16 x 4 registers) up to d 128; at
  // d 256 they would not fit beside the 128 O accumulators, so Q stays in shared memory and each
  // k16 step of Q K^T reloads its fragment with ldmatrix.
  static constexpr bool kQInRegisters = HeadDim <= 128;

  // One K and one V buffer (FlashAttention 2's pipeline: V_n lands during S = Q K_n^T, K_{n+1}
  // during the softmax and P V of step n). Layout, in halves:
  //   Q in registers: K | V, with the Q tile aliased onto V: Q is read into registers before the
  //                   barrier that precedes the first V copy.
  //   Q in shared:    Q | K | V.
  static_assert(!kQInRegisters || Tile::kTileHalves <= Tile::kKeyTileHalves, "the Q tile fits the V buffer it is aliased onto");
  static constexpr int kQOffset = kQInRegisters ? Tile::kKeyTileHalves : 0;
  static constexpr int kKOffset = kQInRegisters ? 0 : Tile::kTileHalves;
  static constexpr int kVOffset = kKOffset + Tile::kKeyTileHalves;
  static constexpr int kSmemBytes = (kVOffset + Tile::kKeyTileHalves) * 2;  // 18432 for d 64, 34816 for d 128, 67584 for d 256

  // Register tiles per warp: S is 16 x kBlockN, O is 16 x kHeadDim (8-column mma tiles).
  static constexpr int kOTiles = HeadDim / 8;
  static constexpr int kPV16 = Tile::kBlockN / 16;  // k16 steps of P V
};

// Shared memory per SM at the largest carveout, less the 1 KB reserved per CTA: the CTAs of one
// instantiation that fit (the gate's occupancy calculator checks the same, with registers).
constexpr int ctas_by_smem(int smemPerSm, int smemBytes) { return smemPerSm / (smemBytes + 1024); }
static_assert(ctas_by_smem(100 * 1024, ForwardTraits<256>::kSmemBytes) >= 1, "d 256 fits one CTA on sm_86/89");
static_assert(ctas_by_smem(100 * 1024, ForwardTraits<128>::kSmemBytes) >= 2, "d 128 fits two CTAs per SM on sm_86/89");
static_assert(ctas_by_smem(164 * 1024, ForwardTraits<256>::kSmemBytes) >= 2, "d 256 fits two CTAs per SM on sm_80 (and sm_90's 228 KB)");

}  // namespace psa::gpu
