// Host launcher of the per-row top-k threshold kernel (topk_kernel.cuh): tau_i = the k_i-th
// largest allowed score of query row i (docs/contract.md#top-k-thresholds), for the forward
// kernel's ForwardParams::threshold.
#pragma once

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"

namespace psa::gpu {

// Writes thresholds[(b * heads + h) * seqQ + i] (float32, device) for every row: the k_i-th
// largest s_ij = scale * dot(q_i, k_j) over the allowed keys A_i (the keys the forward kernel
// visits and its element mask keeps, for the same params), ties counted, bit-identical to the
// forward kernel's scores (both use scores.cuh and key_tiles.cuh); -inf when |A_i| <= k_i (empty rows included).
// topK > 0: count mode, k_i = topK; else ratio mode, topKRatio in (0, 1]:
// k_i = max(1, ceil_tolerant(topKRatio * |A_i|)) (ceil_tolerant.cuh).
// Reads q, k, strides, shapes, scale, causal, window, sinks and the layout (CSR with blockSize
// any multiple of 64, or dense when layoutOffsets == nullptr); ignores v, o, lse, threshold,
// keptCounts and the softmax fields.
// Returns cudaErrorInvalidValue for parameters it does not support: headDim outside 1..256,
// blockSize not a positive multiple of 64, heads not a multiple of kvHeads, neither topK > 0 nor
// topKRatio in (0, 1], missing pointers, more than 65535 heads or batches. seqQ == 0 or
// batch == 0 launches nothing.
cudaError_t attention_topk_thresholds(const ForwardParams& params, MmaType type, int topK, double topKRatio, float* thresholds, cudaStream_t stream);

// Dynamic shared memory of the instantiation used for `headDim` (0 if unsupported).
int attention_topk_smem_bytes(int headDim);

}  // namespace psa::gpu
