// Top-k thresholds of a decode step, one CTA per query row: tau is the k-th largest score of
// the keys the row attends to (its page flags, causality, window and sinks: the attention
// kernel's rule), k = topK, or max(1, ceil(topKRatio * allowed)); -inf when the row has at most
// k keys. A radix select over the order-preserving keys of the scores, 8 bits a pass, the
// scores recomputed each pass (key_score, so the attention kernel compares exactly these).
#pragma once

#include <cstdint>

#include "../attention/bits.cuh"
#include "../attention/ceil_tolerant.cuh"
#include "../cuda_compat.h"
#include "params.h"
#include "row_rule.cuh"
#include "traits.h"

namespace psa::gpu::decode {

template <typename T>
__global__ void __launch_bounds__(kThreads) topk_threshold_kernel(StepParams p, float* thresholds) {
  __shared__ float q[256];
  __shared__ unsigned hist[256];
  __shared__ unsigned prefixOf, remaining, allowedCount;
  const int D = p.pool.headDim, ps = p.pool.pageSize, N = p.maxPages, G = p.group();
  const long long row = blockIdx.x;
  const int i = static_cast<int>(row % p.m);
  const int h = static_cast<int>((row / p.m) % p.heads);
  const int b = static_cast<int>(row / (static_cast<long long>(p.m) * p.heads));
  const int hk = h / G;
  const RowSpan span = row_span(p, p.lengths[b], i);
  const std::uint8_t* flags = p.pageFlags + row * N;
  for (int d = threadIdx.x; d < D; d += blockDim.x) q[d] = widen16<T>(p.q[row * D + d]);
  if (threadIdx.x == 0) allowedCount = 0;
  __syncthreads();
  const int items = (span.pos / ps + 1) * ps;  // (page, slot) pairs up to the row's last page
  unsigned mine = 0;
  for (int e = threadIdx.x; e < items; e += blockDim.x) mine += key_allowed(flags[e / ps], span, e);
  if (mine) atomicAdd(&allowedCount, mine);
  __syncthreads();
  const unsigned n = allowedCount;
  const double want = p.topK > 0 ? p.topK : fmax(1.0, ceil_tolerant(p.topKRatio * n));
  if (static_cast<double>(n) <= want) {
    if (threadIdx.x == 0) thresholds[row] = -INFINITY;
    return;
  }
  if (threadIdx.x == 0) {
    prefixOf = 0;
    remaining = static_cast<unsigned>(want);
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int t = threadIdx.x; t < 256; t += blockDim.x) hist[t] = 0;
    __syncthreads();
    const unsigned prefix = prefixOf;
    const unsigned high = shift == 24 ? 0u : ~0u << (shift + 8);  // the bits decided so far
    for (int e = threadIdx.x; e < items; e += blockDim.x) {
      if (!key_allowed(flags[e / ps], span, e)) continue;
      const int page = p.pageTable[static_cast<std::size_t>(b) * p.tableStride + e / ps];
      const std::uint32_t key = ordered_key(key_score<T>(q, p.pool.keys + pool_offset(p.pool, page, hk, e % ps), D, p.scale));
      if ((key & high) == (prefix & high)) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      // The bin holding the k-th largest: walk down from the top.
      unsigned above = 0;
      int bin = 255;
      for (; bin > 0 && above + hist[bin] < remaining; bin--) above += hist[bin];
      remaining -= above;
      prefixOf = prefix | (static_cast<unsigned>(bin) << shift);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) thresholds[row] = ordered_value(prefixOf);
}

}  // namespace psa::gpu::decode
