// Host launcher of the fused sparse attention forward kernel (forward_kernel.cuh).
#pragma once

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"

namespace psa::gpu {

// Launches the forward kernel on `stream`: picks the instantiation (head dim padded to 64, 128
// or 256, the element type, causal, exact or polynomial exp), opts in to its dynamic shared
// memory, and launches a grid of (ceil(seqQ / rows), heads, batch) CTAs of 128 threads, rows 64
// or, at head dims up to 128, 128 (fwd::use_wide_tiles).
// The layout (when given) may use any blockSize that is a multiple of 64 up to 256: the kernel
// still works in 64 x 64 tiles and expands each layout entry into blockSize / 64 key tiles.
// Writes o, and lse and keptCounts when they are not null.
// Returns cudaErrorInvalidValue for parameters it does not support: headDim outside 1..256,
// blockSize not one of 64, 128, 192, 256, heads not a multiple of kvHeads, more than 65535 heads
// or batches, polyDegree outside 0..8, missing pointers. seqQ == 0 or batch == 0 launches
// nothing.
cudaError_t attention_forward(const ForwardParams& params, MmaType type, cudaStream_t stream);

// Dynamic shared memory of the instantiation for `headDim` and query tiles of `tileRows` rows
// (0 if unsupported): 64 rows: 18432 B for 1..64, 34816 B for 65..128, 67584 B for 129..256;
// 128 rows: 36864 B for 1..64, 52224 B for 65..128.
int attention_forward_smem_bytes(int headDim, int tileRows = 64);

namespace fwd {
// One per head-dim unit (forward_hdim64.cu, forward_hdim128.cu, forward_hdim256.cu), for
// attention_forward once it has validated `params`.
cudaError_t forward_hdim64(const ForwardParams& params, MmaType type, cudaStream_t stream);
cudaError_t forward_hdim128(const ForwardParams& params, MmaType type, cudaStream_t stream);
cudaError_t forward_hdim256(const ForwardParams& params, MmaType type, cudaStream_t stream);

// Whether a call takes 128-row query tiles (WideForwardTraits, of `wideSmemBytes` shared memory):
// more than 64 query rows, no layout or one whose query blocks hold whole 128-row tiles, and a
// device that fits two such CTAs an SM.
bool use_wide_tiles(const ForwardParams& params, int wideSmemBytes);
}  // namespace fwd

}  // namespace psa::gpu
