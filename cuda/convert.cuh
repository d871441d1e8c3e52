// Element conversions between float32 and the 16-bit storage types, on the device.
// Rounding is to nearest even (cvt.rn), the rounding every backend's host twin uses.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda_compat.h"

namespace psa::gpu {

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// dst[i] = round(src[i]) for i < n, grid-stride.
template <typename T>
__global__ void narrow_f32_kernel(const float* __restrict__ src, T* __restrict__ dst, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    dst[i] = from_f32<T>(src[i]);
  }
}

// dst[i] = float(src[i]) for i < n, grid-stride.
template <typename T>
__global__ void widen_to_f32_kernel(const T* __restrict__ src, float* __restrict__ dst, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    dst[i] = to_f32(src[i]);
  }
}

}  // namespace psa::gpu
