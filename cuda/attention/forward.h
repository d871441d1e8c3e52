// Host launcher of the fused sparse attention forward kernel (forward_kernel.cuh).
#pragma once

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"

namespace psa::gpu {

// Launches the forward kernel on `stream`: picks the instantiation (head dim 64 or 128, the
// element type, causal, exact or polynomial exp), opts in to its dynamic shared memory, and
// launches a grid of (query blocks, heads, batch) CTAs of 128 threads.
// Returns cudaErrorInvalidValue for parameters it does not support: headDim outside 1..128,
// blockSize other than 64, heads not a multiple of kvHeads, polyDegree outside 0..8, missing
// pointers. seqQ == 0 or batch == 0 launches nothing.
cudaError_t attention_forward(const ForwardParams& params, MmaType type, cudaStream_t stream);

// Dynamic shared memory of the instantiation used for `headDim` (0 if unsupported).
int attention_forward_smem_bytes(int headDim);

}  // namespace psa::gpu
