// Appending tokens to the page pool: each key and value element rounded once to the pool's
// 16-bit type (from float32, or widened exactly from the other 16-bit type) and written to its
// slot; then the metadata of every page the append touched recomputed from its stored keys, so
// the estimates describe exactly the keys the attention reads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "../convert.cuh"
#include "../cuda_compat.h"
#include "params.h"
#include "row_rule.cuh"

namespace psa::gpu::decode {

template <typename In> __device__ __forceinline__ float input_value(const In* p, std::size_t i) { return to_f32(p[i]); }
template <> __device__ __forceinline__ float input_value<float>(const float* p, std::size_t i) { return p[i]; }

template <typename T> __device__ __forceinline__ std::uint16_t narrow16(float x);
template <> __device__ __forceinline__ std::uint16_t narrow16<__half>(float x) { return __half_as_ushort(__float2half_rn(x)); }
template <> __device__ __forceinline__ std::uint16_t narrow16<__nv_bfloat16>(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }

// One thread per element of k (and v), grid-stride: [sequence][kvHead][token][channel].
template <typename T, typename In>
__global__ void append_tokens_kernel(AppendParams p) {
  const std::size_t D = p.headDim;
  const std::size_t total = static_cast<std::size_t>(p.sequences) * p.kvHeads * p.n * D;
  const In* k = static_cast<const In*>(p.k);
  const In* v = static_cast<const In*>(p.v);
  for (std::size_t e = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; e < total; e += std::size_t(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(e % D);
    const std::size_t token = e / D;  // (sequence, head, t)
    const int t = static_cast<int>(token % p.n);
    const int head = static_cast<int>((token / p.n) % p.kvHeads);
    const int seq = static_cast<int>(token / (static_cast<std::size_t>(p.n) * p.kvHeads));
    const int slot = p.slots[static_cast<std::size_t>(seq) * p.n + t];
    const std::size_t dst = ((static_cast<std::size_t>(slot / p.pageSize) * p.kvHeads + head) * p.pageSize + slot % p.pageSize) * D + d;
    p.keys[dst] = narrow16<T>(input_value(k, e));
    p.values[dst] = narrow16<T>(input_value(v, e));
  }
}

// One thread per (touched page, kv head, channel): min, max, sum and sum of squares over the
// page's valid keys, as stored.
template <typename T>
__global__ void page_metadata_kernel(AppendParams p) {
  const std::size_t D = p.headDim;
  const std::size_t total = static_cast<std::size_t>(p.touchedCount) * p.kvHeads * D;
  for (std::size_t e = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; e < total; e += std::size_t(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(e % D);
    const int head = static_cast<int>((e / D) % p.kvHeads);
    const int which = static_cast<int>(e / (D * p.kvHeads));
    const int page = p.touched[which];
    const int count = p.touchedKeys[which];
    const std::size_t base = (static_cast<std::size_t>(page) * p.kvHeads + head) * p.pageSize * D + d;
    float lo = INFINITY, hi = -INFINITY, sum = 0.0f, sumSq = 0.0f;
    for (int s = 0; s < count; s++) {
      const float x = widen16<T>(p.keys[base + static_cast<std::size_t>(s) * D]);
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
      sum += x;
      sumSq = fmaf(x, x, sumSq);
    }
    float* meta = p.meta + (static_cast<std::size_t>(page) * p.kvHeads + head) * kMetaFields * D + d;
    meta[kMetaMin * D] = lo;
    meta[kMetaMax * D] = hi;
    meta[kMetaSum * D] = sum;
    meta[kMetaSumSq * D] = sumSq;
  }
}

}  // namespace psa::gpu::decode
