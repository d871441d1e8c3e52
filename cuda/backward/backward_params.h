// Parameters of the backward kernels (dkdv_kernel.cuh, dq_kernel.cuh, row_max_kernel.cuh, prepare.cu): the
// forward's own parameters (shape, strides, mask, layout, softmax, top-k thresholds: the kept
// sets are the forward's, so the backward reads them through the same structure and the same
// tile walk), plus dO, the per-row statistics of the pre-pass, the layout transposed, and the
// float32 gradients. One plain struct, passed by value.
#pragma once

#include <cstdint>

#include "../attention/params.h"

namespace psa::gpu {

// What the pre-pass leaves per row [batch, heads, seqQ] (prepare.cu), so that the
// backward kernels compute, for a kept score x_ij in log2 units,
//   P_ij = E(x_ij - shift_i) * invZ_i   and   dS_ij = E'(x_ij - shift_i) * invZ_i * (dP_ij - delta_i):
// exp: shift = LSE log2 e, invZ = 1; poly: shift = the row's maximum m_i, invZ = 1 / Z_i; a row
// without a kept key: shift = 0, invZ = 0, delta = 0.
struct RowStats {
  float shift, invZ, delta;
};

struct BackwardParams {
  ForwardParams fwd;                   // q, k, v (16-bit), shape, strides, mask, layout, softmax, threshold
  const std::uint16_t* dO = nullptr;   // 16-bit, the strides of q (fwd.qStrides)
  const RowStats* rows = nullptr;      // [batch, heads, seqQ]

  // The layout transposed (sparse calls): for row c = (b * heads + h) * numKeyBlocks + J, the
  // entries tOffsets[c] .. tOffsets[c + 1] - 1 are the forward's layout entries that name key
  // block J, ascending by query block: tQueryBlocks[e] is the query block, tEntries[e] the entry
  // of the forward's layout (its flags, and its place in the query tile's walk).
  const std::int32_t* tOffsets = nullptr;
  const std::int32_t* tQueryBlocks = nullptr;
  const std::int32_t* tEntries = nullptr;

  // Gradients, float32: dq with the strides of q, dk and dv with those of k.
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};

}  // namespace psa::gpu
