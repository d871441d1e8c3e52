// One query row of a decode step: its position, the keys its window and sinks reach, and the
// score of a cached key. The plan, top-k and attention kernels all call these, so a key is
// scored and allowed the same way wherever it is looked at (docs/decode.md).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"

namespace psa::gpu::decode {

// Keys 0..sinkHi are sinks, wLo..wHi the window (empty when wHi < wLo); the row sees j <= pos.
struct RowSpan {
  int pos;
  int wLo, wHi;
  int sinkHi;
};

__host__ __device__ inline RowSpan row_span(const StepParams& p, int length, int i) {
  RowSpan r;
  r.pos = length - p.m + i;
  if (p.windowLeft >= 0) {
    const long long lo = static_cast<long long>(r.pos) - p.windowLeft;
    const long long hi = static_cast<long long>(r.pos) + p.windowRight;
    r.wLo = lo < 0 ? 0 : static_cast<int>(lo);
    r.wHi = hi < r.pos ? static_cast<int>(hi) : r.pos;
  } else {
    r.wLo = 1;
    r.wHi = 0;
  }
  const int sinks = p.globalTokens - 1;
  r.sinkHi = sinks < r.pos ? sinks : r.pos;
  return r;
}

__host__ __device__ inline bool in_window_or_sinks(const RowSpan& r, int j) { return j <= r.sinkHi || (j >= r.wLo && j <= r.wHi); }

// Key j (by position) for a row whose page flag for j's page is `flag`: causal, and the whole
// page is attended to or j is in the window or the sinks.
__host__ __device__ inline bool key_allowed(std::uint8_t flag, const RowSpan& r, int j) {
  return flag && j <= r.pos && ((flag & kPageWhole) || in_window_or_sinks(r, j));
}

__host__ __device__ inline int span_of(int lo, int hi) { return hi >= lo ? hi - lo + 1 : 0; }
__host__ __device__ inline int min_of(int a, int b) { return a < b ? a : b; }
__host__ __device__ inline int max_of(int a, int b) { return a > b ? a : b; }

// Keys of [lo, hi] the window or the sinks reach.
__host__ __device__ inline int window_sink_count(const RowSpan& r, int lo, int hi) {
  const int w = span_of(max_of(lo, r.wLo), min_of(hi, r.wHi));
  const int s = span_of(lo, min_of(hi, r.sinkHi));
  const int both = span_of(max_of(lo, r.wLo), min_of(min_of(hi, r.wHi), r.sinkHi));
  return w + s - both;
}

template <typename T> __device__ __forceinline__ float widen16(std::uint16_t bits);
template <> __device__ __forceinline__ float widen16<__half>(std::uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
template <> __device__ __forceinline__ float widen16<__nv_bfloat16>(std::uint16_t bits) { return __bfloat162float(__ushort_as_bfloat16(bits)); }

// scale * (q . k) in float32, channels in order: the one score every decode kernel uses. A lane
// scores one key (the plan reads it from the pool, attention from shared memory), 8 channels a
// 16-byte load where the head dim keeps every key row aligned to them: a warp's load then
// touches 32 sectors for 512 bytes, not for 64. The products are summed in the same order
// either way.
template <typename T>
__device__ __forceinline__ float key_score(const float* q, const std::uint16_t* key, int headDim, float scale) {
  float dot = 0.0f;
  int d = 0;
  if (headDim % 8 == 0 && (reinterpret_cast<std::uintptr_t>(key) & 15) == 0) {
    for (; d < headDim; d += 8) {
      const uint4 v = ld(reinterpret_cast<const uint4*>(key + d));
      const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
      for (int e = 0; e < 4; e++) {
        dot = fmaf(q[d + 2 * e], widen16<T>(static_cast<std::uint16_t>(w[e] & 0xffffu)), dot);
        dot = fmaf(q[d + 2 * e + 1], widen16<T>(static_cast<std::uint16_t>(w[e] >> 16)), dot);
      }
    }
  }
  for (; d < headDim; d++) dot = fmaf(q[d], widen16<T>(ld(key + d)), dot);
  return scale * dot;
}

// Offset of (page, kv head, slot) in the key and value pools.
__host__ __device__ inline std::size_t pool_offset(const PoolView& v, int page, int head, int slot) {
  return ((static_cast<std::size_t>(page) * v.kvHeads + head) * v.pageSize + slot) * v.headDim;
}

__device__ __forceinline__ float log_add_exp(float a, float b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  const float m = fmaxf(a, b);
  return m + logf(expf(a - m) + expf(b - m));
}

// ln(e^a - e^b) for b <= a (-inf when b >= a).
__device__ __forceinline__ float log_sub_exp(float a, float b) {
  if (b == -INFINITY) return a;
  if (b >= a) return -INFINITY;
  return a + log1pf(-expf(b - a));
}

}  // namespace psa::gpu::decode
