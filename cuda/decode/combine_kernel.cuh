// The LSE combine: rows of partial results over disjoint key sets merged by their natural-log
// sums, lse = ln sum_p e^{lse_p}, O = sum_p e^{lse_p - lse} O_p. A part with lse = -inf adds
// nothing (its output is not read); a row empty in every part gives 0 and -inf. One warp per
// row. Split-KV decode and mergeAttention on device tensors both call it.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "plan_kernel.cuh"

namespace psa::gpu::decode {

__global__ void lse_combine_kernel(const float* const* outputs, const float* const* lses, int parts, long long rows, int headDim, float* out, float* lse) {
  const int lane = threadIdx.x & 31;
  const long long warps = static_cast<long long>(gridDim.x) * (blockDim.x >> 5);
  for (long long row = blockIdx.x * static_cast<long long>(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float mx = -INFINITY;
    for (int q = lane; q < parts; q += 32) mx = fmaxf(mx, lses[q][row]);
    mx = warp_max(mx);
    if (mx == -INFINITY) {
      for (int d = lane; d < headDim; d += 32) out[row * headDim + d] = 0.0f;
      if (lane == 0 && lse) lse[row] = -INFINITY;
      continue;
    }
    float sum = 0.0f;
    for (int q = lane; q < parts; q += 32) sum += expf(lses[q][row] - mx);
    const float total = mx + logf(warp_sum(sum));
    for (int d = lane; d < headDim; d += 32) {
      float o = 0.0f;
      for (int q = 0; q < parts; q++) {
        const float w = expf(lses[q][row] - total);
        if (w != 0.0f) o = fmaf(w, outputs[q][row * headDim + d], o);
      }
      out[row * headDim + d] = o;
    }
    if (lane == 0 && lse) lse[row] = total;
  }
}

}  // namespace psa::gpu::decode
