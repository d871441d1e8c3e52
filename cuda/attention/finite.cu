// The first value of a device tensor that is not finite (or too large for a later
// conversion): one grid-stride pass, each thread stopping at its first hit; the smallest hit
// index wins by atomicMin, so the answer is the first such element whatever the schedule.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "../convert.cuh"
#include "../cuda_compat.h"
#include "../runtime_status.h"
#include "finite.h"

namespace psa::gpu {
namespace {

constexpr int kThreads = 256;
constexpr unsigned long long kNone = ULLONG_MAX;

__device__ __forceinline__ float as_f32(float x) { return x; }
__device__ __forceinline__ float as_f32(__half x) { return to_f32(x); }
__device__ __forceinline__ float as_f32(__nv_bfloat16 x) { return to_f32(x); }

template <typename T>
__global__ void first_non_finite_kernel(const T* __restrict__ src, std::size_t n, float bound, unsigned long long* first) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    // Written so that a NaN fails it too.
    if (!(fabsf(as_f32(src[i])) < bound)) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;
    }
  }
}

template <typename T>
Status launch(const void* src, std::size_t n, float bound, unsigned long long* first) {
  const unsigned blocks = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>((n + kThreads - 1) / kThreads, 4096)));
  PSA_LAUNCH(first_non_finite_kernel<T>, blocks, kThreads, 0, cudaStreamPerThread)(static_cast<const T*>(src), n, bound, first);
  return status_of(cudaGetLastError(), "launching the value check");
}

}  // namespace

Status first_non_finite(const Buffer& src, DType type, std::size_t n, float bound, long long& index) {
  index = -1;
  if (n == 0) return Status::success();
  PSA_TRY(cudaSetDevice(src.device), "selecting the CUDA device");
  unsigned long long* first = nullptr;
  PSA_TRY(cudaMalloc(&first, sizeof *first), "allocating the value check's result");
  unsigned long long host = kNone;
  Status s = status_of(cudaMemcpyAsync(first, &host, sizeof host, cudaMemcpyHostToDevice, cudaStreamPerThread), "initialising the value check");
  if (s.ok()) {
    switch (type) {
      case DType::F32: s = launch<float>(src.ptr, n, bound, first); break;
      case DType::F16: s = launch<__half>(src.ptr, n, bound, first); break;
      case DType::BF16: s = launch<__nv_bfloat16>(src.ptr, n, bound, first); break;
    }
  }
  if (s.ok()) s = status_of(cudaMemcpyAsync(&host, first, sizeof host, cudaMemcpyDeviceToHost, cudaStreamPerThread), "reading the value check's result");
  if (s.ok()) s = status_of(cudaStreamSynchronize(cudaStreamPerThread), "checking the values on the device");
  const Status freed = status_of(cudaFree(first), "freeing the value check's result");
  if (!s.ok()) return s;
  if (!freed.ok()) return freed;
  if (host != kNone) index = static_cast<long long>(host);
  return Status::success();
}

}  // namespace psa::gpu
