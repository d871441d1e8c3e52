// The split-KV decode attention: CTA (split, row tile, b * kvHeads + kv head) takes the pages
// [split * pagesPerSplit, ...) of one sequence for up to kTileRows query rows of one kv group
// (its heads times the step's queries, packed), so a page's keys and values are read from the
// pool once for every row that needs them, and a page no row of the tile attends to is not read
// at all. Each row masks the page by its own flags (whole page, or window and sinks), causality
// and top-k threshold, and keeps an online softmax in log2 units; each split writes its
// normalised partial output and natural-log LSE, which the combine kernel merges.
//
// With the polynomial softmax the running maximum is rounded up to an integer (log2 units), so
// rescaling, here and across splits, is by exact powers of two, which E(x) = p(f) 2^n follows.
#pragma once

#include <cstdint>

#include "../attention/exp2_poly.cuh"
#include "../cuda_compat.h"
#include "params.h"
#include "plan_kernel.cuh"
#include "row_rule.cuh"
#include "traits.h"

namespace psa::gpu::decode {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int PolyDegree>
__device__ __forceinline__ float softmax_exp2(float x, const float (&c)[9]) {
  if constexpr (PolyDegree == 0) {
    return exp2f(x);
  } else {
    return x == -INFINITY ? 0.0f : exp2_poly<PolyDegree>(x, c);
  }
}

// Four CTAs per SM at least (shared memory allows 6 to 8 at pages of 32, head dim 128): left to
// itself ptxas squeezes the degree-8 polynomial variant into 40 registers on sm_80 and spills.
template <typename T, int PolyDegree>
__global__ void __launch_bounds__(kThreads, 4) split_attention_kernel(StepParams p) {
  PSA_DYNAMIC_SHARED(unsigned char, smem);
  __shared__ long long rowOf[kTileRows];
  __shared__ RowSpan spanOf[kTileRows];
  __shared__ float rowM[kTileRows], rowL[kTileRows], tauOf[kTileRows];
  __shared__ int keptOf[kTileRows];
  __shared__ std::uint8_t flagOf[kTileRows];
  __shared__ int anyRow[2];  // by page parity: one is cleared while the other is read

  const int D = p.pool.headDim, ps = p.pool.pageSize, N = p.maxPages;
  const int G = p.group();
  const int split = blockIdx.x;
  const int b = static_cast<int>(blockIdx.z) / p.pool.kvHeads;
  const int hk = static_cast<int>(blockIdx.z) % p.pool.kvHeads;
  const int L = p.lengths[b];
  float* qs = reinterpret_cast<float*>(smem);
  float* acc = qs + kTileRows * D;
  std::uint16_t* ks = reinterpret_cast<std::uint16_t*>(acc + kTileRows * D);
  std::uint16_t* vs = ks + ps * D;
  float* sc = reinterpret_cast<float*>(vs + ps * D);
  float coef[9];
  for (int c = 0; c < 9; c++) coef[c] = p.polyCoefficients[c];

  if (threadIdx.x < kTileRows) {
    const int rr = blockIdx.y * kTileRows + threadIdx.x;  // row within the group: (g, i)
    const bool valid = rr < G * p.m;
    const int g = valid ? rr / p.m : 0, i = valid ? rr % p.m : 0;
    rowOf[threadIdx.x] = valid ? (static_cast<long long>(b) * p.heads + hk * G + g) * p.m + i : -1;
    spanOf[threadIdx.x] = row_span(p, L, i);
    rowM[threadIdx.x] = -INFINITY;
    rowL[threadIdx.x] = 0.0f;
    tauOf[threadIdx.x] = valid && p.thresholds ? p.thresholds[rowOf[threadIdx.x]] : -INFINITY;
    keptOf[threadIdx.x] = 0;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kTileRows * D; e += blockDim.x) {
    const long long row = rowOf[e / D];
    qs[e] = widen16<T>(ld_if(row >= 0, p.q + (row >= 0 ? row : 0) * D + e % D, std::uint16_t{0}));
    acc[e] = 0.0f;
  }

  const int seqPages = (L + ps - 1) / ps;
  const int first = split * p.pagesPerSplit;
  const int last = min_of(first + p.pagesPerSplit, seqPages);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) anyRow[first & 1] = 0;
  for (int J = first; J < last; J++) {
    __syncthreads();
    if (threadIdx.x < kTileRows) {
      const long long row = rowOf[threadIdx.x];
      const std::uint8_t f = row >= 0 && J <= spanOf[threadIdx.x].pos / ps ? p.pageFlags[row * N + J] : 0;
      flagOf[threadIdx.x] = f;
      if (f) atomicExch(&anyRow[J & 1], 1);
    }
    // The next page's flag: every thread read it last at the previous page, before the barrier above.
    if (threadIdx.x == 0) anyRow[(J + 1) & 1] = 0;
    __syncthreads();
    if (!anyRow[J & 1]) continue;  // no row of the tile attends to this page: it is not read
    const int page = p.pageTable[static_cast<std::size_t>(b) * p.tableStride + J];
    const int count = min_of(ps, L - J * ps);
    const std::size_t base = pool_offset(p.pool, page, hk, 0);
    for (int e = threadIdx.x; e < count * D; e += blockDim.x) {
      ks[e] = ld(p.pool.keys + base + e);
      vs[e] = ld(p.pool.values + base + e);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kTileRows * ps; e += blockDim.x) {
      const int r = e / ps, j = e % ps, key = J * ps + j;
      const bool allowed = j < count && key_allowed(flagOf[r], spanOf[r], key);
      float s = allowed ? key_score<T>(qs + r * D, ks + j * D, D, p.scale) : -INFINITY;
      if (s < tauOf[r]) s = -INFINITY;
      sc[e] = s == -INFINITY ? -INFINITY : s * kLog2e;
    }
    __syncthreads();
    for (int r = warp; r < kTileRows; r += kWarps) {
      if (!flagOf[r]) continue;
      float mx = -INFINITY;
      for (int j = lane; j < ps; j += 32) mx = fmaxf(mx, sc[r * ps + j]);
      mx = warp_max(mx);
      if (mx == -INFINITY) continue;
      float newM = fmaxf(rowM[r], mx);
      if (PolyDegree != 0) newM = ceilf(newM);
      const float corr = rowM[r] == -INFINITY ? 0.0f : exp2f(rowM[r] - newM);
      float sum = 0.0f;
      int kept = 0;
      for (int j = lane; j < ps; j += 32) {
        const float x = sc[r * ps + j];
        kept += x != -INFINITY;
        const float w = softmax_exp2<PolyDegree>(x - newM, coef);
        sc[r * ps + j] = w;
        sum += w;
      }
      sum = warp_sum(sum);
      for (int o = 16; o > 0; o >>= 1) kept += __shfl_xor_sync(0xffffffffu, kept, o);
      __syncwarp();
      for (int d = lane; d < D; d += 32) {
        float a = acc[r * D + d] * corr;
        for (int j = 0; j < count; j++) a = fmaf(sc[r * ps + j], widen16<T>(vs[j * D + d]), a);
        acc[r * D + d] = a;
      }
      if (lane == 0) {
        rowL[r] = rowL[r] * corr + sum;
        rowM[r] = newM;
        keptOf[r] += kept;
      }
      __syncwarp();
    }
    __syncthreads();
  }
  __syncthreads();
  const long long rows = p.rows();
  for (int e = threadIdx.x; e < kTileRows * D; e += blockDim.x) {
    const int r = e / D;
    if (rowOf[r] < 0) continue;
    p.partOutput[(split * rows + rowOf[r]) * D + e % D] = rowL[r] > 0.0f ? acc[e] / rowL[r] : 0.0f;
  }
  if (threadIdx.x < kTileRows && rowOf[threadIdx.x] >= 0) {
    const int r = threadIdx.x;
    p.partLse[split * rows + rowOf[r]] = rowL[r] > 0.0f ? (rowM[r] + log2f(rowL[r])) * kLn2 : -INFINITY;
    p.partKept[split * rows + rowOf[r]] = keptOf[r];
  }
}

// Pages read by a step: distinct (sequence, kv head, page) some row of the group attends to.
__global__ void pages_read_kernel(StepParams p, int* out) {
  const int N = p.maxPages, G = p.group();
  const std::size_t total = static_cast<std::size_t>(p.batch) * p.pool.kvHeads * N;
  int mine = 0;
  for (std::size_t e = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; e < total; e += std::size_t(gridDim.x) * blockDim.x) {
    const int J = static_cast<int>(e % N);
    const int hk = static_cast<int>((e / N) % p.pool.kvHeads);
    const int b = static_cast<int>(e / (static_cast<std::size_t>(N) * p.pool.kvHeads));
    bool read = false;
    for (int g = 0; g < G && !read; g++) {
      for (int i = 0; i < p.m && !read; i++) read = p.pageFlags[((static_cast<std::size_t>(b) * p.heads + hk * G + g) * p.m + i) * N + J] != 0;
    }
    mine += read;
  }
  if (mine) atomicAdd(out, mine);
}

}  // namespace psa::gpu::decode
