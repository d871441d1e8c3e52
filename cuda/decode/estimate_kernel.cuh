// The page estimates of a decode step in one wide grid, before the plan: CTA (page chunk,
// b * kvHeads + kv head) takes kThreads pages of one sequence, a lane per page, and every query
// row of the kv group (its heads times the step's queries), kTileRows rows at a time staged in
// shared memory. A page's metadata is read from the pool once per kv head (and tile of rows),
// not once per query row, over as many CTAs as the step has pages / kThreads times kv heads,
// where the plan has one CTA per row; the plan then reads one float per candidate.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"
#include "row_rule.cuh"
#include "traits.h"

namespace psa::gpu::decode {

// Channels [d, d + 4) of one metadata field (clipped to D): one 16-byte load where the head dim
// keeps the rows aligned to them (a lane reads one page: 16 bytes of a sector, not 4).
__device__ __forceinline__ void meta_channels(const float* field, int d, int D, float (&x)[4]) {
  if (D % 4 == 0) {
    const float4 v = ld(reinterpret_cast<const float4*>(field + d));
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
    return;
  }
  for (int c = 0; c < 4; c++) x[c] = d + c < D ? ld(field + d + c) : 0.0f;
}

// The estimates of one page for the query rows qs[k * D, ...), k < n <= kTileRows, from the
// metadata of its `count` valid keys: each metadata load serves every row, and each row sums
// its channels in order.
__device__ __forceinline__ void page_estimates(const StepParams& p, const float* qs, int n, const float* meta, int count, float (&out)[kTileRows]) {
  const int D = p.pool.headDim;
  float e[kTileRows] = {}, var[kTileRows] = {};
  float a[4], b[4];
  if (p.estimate == Estimate::Bound) {
    for (int d0 = 0; d0 < D; d0 += 4) {
      meta_channels(meta + kMetaMin * D, d0, D, a);
      meta_channels(meta + kMetaMax * D, d0, D, b);
      for (int c = 0; c < 4 && d0 + c < D; c++) {
        for (int k = 0; k < kTileRows; k++) {
          const float x = qs[k * D + d0 + c];
          if (k < n) e[k] += fmaxf(x * a[c], x * b[c]);
        }
      }
    }
    for (int k = 0; k < kTileRows; k++) out[k] = p.scale * e[k];
    return;
  }
  const float inv = 1.0f / static_cast<float>(count);
  const bool moment = p.estimate == Estimate::Moment;
  for (int d0 = 0; d0 < D; d0 += 4) {
    meta_channels(meta + kMetaSum * D, d0, D, a);
    if (moment) meta_channels(meta + kMetaSumSq * D, d0, D, b);
    for (int c = 0; c < 4 && d0 + c < D; c++) {
      const float mean = a[c] * inv;
      const float spread = moment ? fmaxf(0.0f, b[c] * inv - mean * mean) : 0.0f;
      for (int k = 0; k < kTileRows; k++) {
        const float x = qs[k * D + d0 + c];
        if (k >= n) continue;
        e[k] = fmaf(x, mean, e[k]);
        if (moment) var[k] += x * x * spread;
      }
    }
  }
  for (int k = 0; k < kTileRows; k++) out[k] = p.scale * e[k] + (moment ? p.scale * p.scale * 0.5f * var[k] : 0.0f);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) page_estimates_kernel(StepParams p) {
  __shared__ float qs[kTileRows * 256];
  const int G = p.group(), D = p.pool.headDim, ps = p.pool.pageSize, N = p.maxPages;
  const int b = static_cast<int>(blockIdx.y) / p.pool.kvHeads, hk = static_cast<int>(blockIdx.y) % p.pool.kvHeads;
  const int L = p.lengths[b];
  const int J = static_cast<int>(blockIdx.x) * kThreads + static_cast<int>(threadIdx.x);
  const bool valid = J * ps < L;
  const float* meta = nullptr;
  int count = 1;
  if (valid) {
    const int page = ld(p.pageTable + static_cast<std::size_t>(b) * p.tableStride + J);
    meta = p.pool.meta + (static_cast<std::size_t>(page) * p.pool.kvHeads + hk) * kMetaFields * D;
    count = min_of(ps, L - J * ps);
  }
  const int rows = G * p.m;  // (g, i) of the group
  const auto rowOf = [&](int rr) { return (static_cast<std::size_t>(b) * p.heads + hk * G + rr / p.m) * p.m + rr % p.m; };
  for (int r0 = 0; r0 < rows; r0 += kTileRows) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTileRows * D; e += blockDim.x) {
      const int rr = r0 + e / D;
      qs[e] = widen16<T>(ld_if(rr < rows, p.q + (rr < rows ? rowOf(rr) : 0) * D + e % D, std::uint16_t{0}));
    }
    __syncthreads();
    const int n = min_of(kTileRows, rows - r0);
    float est[kTileRows];
    if (valid) page_estimates(p, qs, n, meta, count, est);
    for (int k = 0; k < n; k++) st_if(valid, p.estimates + rowOf(r0 + k) * N + (valid ? J : 0), valid ? est[k] : 0.0f);
  }
}

}  // namespace psa::gpu::decode
