// Host launchers of the backward's pre-pass (prepare.cu): the row statistics and the layout
// transposed. The polynomial's row maxima come from attention_backward_row_max (backward.h).
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "backward_params.h"

namespace psa::gpu {

// rows[r] for every row r of [batch, heads, seqQ]: delta = dO . O (both float32, the strides of
// q), shift and 1 / Z from the LSE and, for the polynomial, rowMax (nullptr for exact exp).
cudaError_t backward_row_stats(const float* dO, const float* o, const float* lse, const float* rowMax, const Shape& shape, const Strides& qStrides, RowStats* rows,
                               cudaStream_t stream);

// Layout geometry of the transpose: rows (b, h, I) of the forward's layout, columns (b, h, J).
struct TransposeShape {
  int batchHeads;   // batch * heads
  int queryBlocks;  // numQueryBlocks
  int keyBlocks;    // numKeyBlocks
};

// The transposed layout of BackwardParams (tOffsets: columns + 1 entries; tQueryBlocks,
// tEntries: one per layout entry); counts is scratch of one int per column.
cudaError_t backward_transpose_layout(const std::int32_t* offsets, const std::int32_t* indices, TransposeShape ts, std::int32_t* counts, std::int32_t* tOffsets,
                                      std::int32_t* tQueryBlocks, std::int32_t* tEntries, cudaStream_t stream);

}  // namespace psa::gpu
