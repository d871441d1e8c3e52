// Host launchers of block selection (select_kernel.cuh): the device side of buildBlockLayout.
// Reproduces lib/reference/select.ts (estimates, ranking, keep counts) and
// lib/layout.ts BlockLayout.fromSelection (the CSR with SELECTED / FULL flags) on the device.
// Contract: docs/contract.md#block-selection; mask rule: docs/contract.md#allowed-keys.
//
// Two phases, because the number of layout entries is known only after selection:
//   1. select_blocks_count: block means (and per-channel min/max for the bound estimate), the
//      estimates, the ranking and the choice of every (b, h, I) into `workspace`, then
//      offsets[0..rows] (rows = batch * heads * ceil(seqQ / blockSize), row r =
//      (b * heads + h) * numQueryBlocks + I): the exclusive scan of the entries per row.
//   2. select_blocks_fill: after the host has read offsets[rows] and allocated that many
//      entries, the key-block indices (ascending per row) and their flags (kBlockSelected,
//      kBlockFull of params.h).
// Both phases take the same SelectParams and the same workspace (its contents are kept between).
//
// Estimates are float32 (block means pooled in float32 from the 16-bit inputs), so a choice can
// differ from the float64 reference where two estimates tie within float32 rounding; everything
// after the estimates (ranking with ties to the lower J, ceil with the 1e-9 tolerance, the
// progressive weights and their running sum) is computed exactly as the reference does, in
// float64 where it uses float64.
//
// Unsupported parameters give cudaErrorInvalidValue and launch nothing:
//   - batch < 0, seqQ < 0, seqK < 0, heads < 1, kvHeads < 1, heads % kvHeads != 0,
//     batch or heads above 65535;
//   - blockSize not a multiple of 16 in 16..256;
//   - headDim outside 1..256 (checked only when mode != None);
//   - windowLeft / windowRight not both -1 or both >= 0; globalTokens < 0;
//   - mode outside the enum; value not finite or negative; minBlocks < 0; maxBlocks < 0;
//   - more than kSelectMaxKeyBlocks (4096) key blocks, ceil(seqK / blockSize), when mode != None
//     (the per-row shared-memory sort holds that many candidates: 64k keys at blockSize 16,
//     256k at 64, 1M at 256);
//   - rows * ceil(seqK / blockSize) above INT32_MAX (the entry count must fit the int32 CSR);
//   - a null offsets pointer; null q / k (with work to do and mode != None); a null workspace
//     where select_workspace_bytes() > 0; null indices / flags in phase 2 with entries to write.
// rows == 0 only writes offsets[0] = 0. seqK == 0 gives rows without entries.
// Estimates that overflow float32 (possible with bfloat16 inputs near its range) rank as the
// reference's infinities do not: such inputs are outside what this kernel reproduces.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "select_traits.h"
#include "shape.h"

namespace psa::gpu {

// Selection modes. None: window and sinks only (no key block is selected).
enum class SelectMode : int { None = 0, Ratio = 1, TopBlocks = 2, Progressive = 3 };
// The block estimate e(I, J) (docs/contract.md#block-selection), a template argument of the rank kernel.
enum class BlockEstimate : int { Mean = 0, Bound = 1, Moment = 2 };

struct SelectParams {
  // 16-bit elements (float16 or bfloat16 bits, by the MmaType given to select_blocks_count).
  const std::uint16_t* q = nullptr;
  const std::uint16_t* k = nullptr;
  Strides qStrides, kStrides;
  Shape shape;
  float scale = 0;  // e(I, J) = scale * dot(...)
  MaskSpec mask;
  int blockSize = 64;  // query and key blocks; a multiple of 16 in 16..256
  SelectMode mode = SelectMode::None;
  double value = 0;  // ratio r, block count k, or progressive tau
  int minBlocks = 0, maxBlocks = INT_MAX;
  bool boundEstimate = false;     // estimate: 'bound' (Quest's per-channel bound) instead of 'mean'
  bool momentEstimate = false;    // estimate: 'moment' (mean plus scale^2/2 * sum q_d^2 var_d); not with boundEstimate
  bool shareAcrossGroup = false;  // one choice per kv group, from the mean of the group's estimates
};

// Bytes of device scratch the two phases share (0 when mode == None or nothing to select).
std::size_t select_workspace_bytes(const SelectParams& params);

// Phase 1: estimates and choice into `workspace`, and offsets (rows + 1 int32, offsets[0] = 0).
cudaError_t select_blocks_count(const SelectParams& params, MmaType type, void* workspace, std::int32_t* offsets, cudaStream_t stream);

// Phase 2: indices and flags of offsets[rows] entries, from phase 1's workspace and offsets.
cudaError_t select_blocks_fill(const SelectParams& params, const void* workspace, const std::int32_t* offsets, std::int32_t* indices,
                               std::uint8_t* flags, cudaStream_t stream);

}  // namespace psa::gpu
