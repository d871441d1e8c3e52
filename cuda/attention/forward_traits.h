// Tile shapes and shared-memory layout of the forward kernel, one struct per instantiation
// (FlashAttention 2's Kernel_traits). Everything shape-like the kernel uses comes from here and
// from the TileShape it shares with the top-k kernel.
#pragma once

#include "tile_shape.h"

namespace psa::gpu {

template <int HeadDim, int BlockM = 64>
struct ForwardTraits : TileShape<HeadDim, BlockM> {
  using Tile = TileShape<HeadDim, BlockM>;
  // Q's A fragments live in registers for the whole CTA (kQK16 x 4 registers) with one slice up
  // to d 128. Else Q stays in shared memory and each k16 step reloads its fragments with
  // ldmatrix: with two slices even at d 64, where 32 registers of Q left the polynomial
  // kernels spilling on sm_80 beside 64 O and 64 S accumulators.
  static constexpr bool kQInRegisters = Tile::kSlices == 1 && HeadDim <= 128;

  // One K and one V buffer (FlashAttention 2's pipeline: V_n lands during S = Q K_n^T, K_{n+1}
  // during the softmax and P V of step n). Layout, in halves:
  //   Q in registers: K | V, with the Q tile aliased onto V: Q is read into registers before
  //                   the barrier that precedes the first V copy.
  //   Q in shared:    Q | K | V.
  static constexpr bool kQAliased = kQInRegisters;
  static_assert(!kQAliased || Tile::kTileHalves <= Tile::kKeyTileHalves, "the Q tile fits the V buffer it is aliased onto");
  static constexpr int kQOffset = kQAliased ? Tile::kKeyTileHalves : 0;
  static constexpr int kKOffset = kQAliased ? 0 : Tile::kTileHalves;
  static constexpr int kVOffset = kKOffset + Tile::kKeyTileHalves;
  // 18432 (d 64), 34816 (d 128), 67584 (d 256); 128 rows: 36864 (d 64), 52224 (d 128).
  static constexpr int kSmemBytes = (kVOffset + Tile::kKeyTileHalves) * 2;

  // Register tiles per warp and slice: S is 16 x kBlockN, O is 16 x kHeadDim (8-column mma tiles).
  static constexpr int kOTiles = HeadDim / 8;
  static constexpr int kPV16 = Tile::kBlockN / 16;  // k16 steps of P V
};

// 128-row query tiles: each warp's K and V fragments serve 32 rows (two m16 slices), half the
// shared-memory reads per Tensor Core FLOP of 64-row tiles, and the tile's copies are shared by
// twice the rows. They need a layout whose query blocks hold whole 128-row tiles (none, or a
// blockSize of 128 or 256). d 64 and d 128 (forward_hdim64.cu, forward_hdim128.cu); at d 128
// they step 32 keys (tile_shape.h), whose 32 S accumulators a lane leave room for the two
// slices' 128 O accumulators.
template <int HeadDim>
using WideForwardTraits = ForwardTraits<HeadDim, 128>;

// Shared memory per SM at the largest carveout, less the 1 KB reserved per CTA: the CTAs of one
// instantiation that fit (the gate's occupancy calculator checks the same, with registers).
constexpr int ctas_by_smem(int smemPerSm, int smemBytes) { return smemPerSm / (smemBytes + 1024); }
static_assert(ctas_by_smem(100 * 1024, ForwardTraits<256>::kSmemBytes) >= 1, "d 256 fits one CTA on sm_86/89");
static_assert(ctas_by_smem(100 * 1024, ForwardTraits<128>::kSmemBytes) >= 2, "d 128 fits two CTAs per SM on sm_86/89");
static_assert(ctas_by_smem(164 * 1024, ForwardTraits<256>::kSmemBytes) >= 2, "d 256 fits two CTAs per SM on sm_80 (and sm_90's 228 KB)");
static_assert(ctas_by_smem(100 * 1024, WideForwardTraits<64>::kSmemBytes) >= 2, "128-row d 64 tiles fit two CTAs per SM on every target");
static_assert(ctas_by_smem(164 * 1024, WideForwardTraits<128>::kSmemBytes) >= 3, "128-row d 128 tiles fit three CTAs per SM on sm_80");

}  // namespace psa::gpu
