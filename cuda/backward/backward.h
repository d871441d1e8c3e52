// Host launchers of the backward kernels (dkdv_kernel.cuh, dq_kernel.cuh, row_max_kernel.cuh, prepare.cu).
#pragma once

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "backward_params.h"

namespace psa::gpu {

// Head dims the backward kernels run (zero-padded to 64 or 128).
constexpr int kBackwardMaxHeadDim = 128;

// The polynomial softmax's row maxima m_i (log2 units) of the forward `p` describes, into
// rowMax [batch, heads, seqQ] (-inf for a row without a kept key).
cudaError_t attention_backward_row_max(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream);

// dK, dV (one CTA per 64-key tile and kv head) then dQ (one CTA per 64-row query tile and head),
// float32, deterministic. Needs bp.rows (attention_backward_row_stats_kernel) and, with a layout,
// its transpose. Returns cudaErrorInvalidValue for head dims outside 1..128, a blockSize that
// is not 64, 128, 192 or 256, polyDegree outside 0..8 or missing pointers.
cudaError_t attention_backward_gradients(const BackwardParams& bp, MmaType type, cudaStream_t stream);

namespace bwd {
cudaError_t gradients_hdim64(const BackwardParams& bp, MmaType type, cudaStream_t stream);
cudaError_t gradients_hdim128(const BackwardParams& bp, MmaType type, cudaStream_t stream);
cudaError_t row_max_hdim64(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream);
cudaError_t row_max_hdim128(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream);
}  // namespace bwd

}  // namespace psa::gpu
