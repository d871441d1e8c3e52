// The first value of a device tensor that is not finite (or too large for a later
// conversion): one grid-stride pass, each thread stopping at its first hit; the smallest hit
// index wins by atomicMin, so the answer is the first such element whatever the schedule.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>

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

// The result words of the checks in flight: per device, one array of 64 words allocated at the
// first check and kept for the process, handed out one word per check, so that a steady state
// of checks allocates nothing whatever their concurrency. A 65th concurrent check allocates
// its own word.
class ResultWords {
 public:
  static constexpr int kWords = 64;
  // A free word of `device`'s array (bit `slot` of its mask), or null.
  unsigned long long* acquire(int device, int& slot) {
    std::lock_guard<std::mutex> g(mutex_);
    Arena& a = arenas_[device];
    if (!a.words.ptr && !alloc_buffer(a.words, kWords * sizeof(unsigned long long), device).ok()) return nullptr;
    if (a.busy == ~std::uint64_t(0)) return nullptr;
    slot = __builtin_ctzll(~a.busy);
    a.busy |= std::uint64_t(1) << slot;
    return static_cast<unsigned long long*>(a.words.ptr) + slot;
  }
  void release(int device, int slot) {
    std::lock_guard<std::mutex> g(mutex_);
    arenas_[device].busy &= ~(std::uint64_t(1) << slot);
  }

 private:
  struct Arena {
    Buffer words;
    std::uint64_t busy = 0;
  };
  std::mutex mutex_;
  std::map<int, Arena> arenas_;
};

ResultWords& result_words() {
  static ResultWords* words = new ResultWords();  // never destroyed: checks may run during exit
  return *words;
}

}  // namespace

Status first_non_finite(const Buffer& src, DType type, std::size_t n, float bound, long long& index) {
  index = -1;
  if (n == 0) return Status::success();
  PSA_TRY(cudaSetDevice(src.device), "selecting the CUDA device");
  Buffer own;  // only when every shared word is busy
  int slot = -1;
  unsigned long long* first = result_words().acquire(src.device, slot);
  Status s;
  if (!first) {
    if (!(s = alloc_buffer(own, sizeof(unsigned long long), src.device)).ok()) return s;
    first = static_cast<unsigned long long*>(own.ptr);
  }
  unsigned long long host = kNone;
  s = status_of(cudaMemcpyAsync(first, &host, sizeof host, cudaMemcpyHostToDevice, cudaStreamPerThread), "initialising the value check");
  if (s.ok()) {
    switch (type) {
      case DType::F32: s = launch<float>(src.ptr, n, bound, first); break;
      case DType::F16: s = launch<__half>(src.ptr, n, bound, first); break;
      case DType::BF16: s = launch<__nv_bfloat16>(src.ptr, n, bound, first); break;
    }
  }
  if (s.ok()) s = status_of(cudaMemcpyAsync(&host, first, sizeof host, cudaMemcpyDeviceToHost, cudaStreamPerThread), "reading the value check's result");
  if (s.ok()) s = status_of(cudaStreamSynchronize(cudaStreamPerThread), "checking the values on the device");
  if (slot >= 0) result_words().release(src.device, slot);  // after the synchronisation: the word is idle
  const Status freed = free_buffer(own);
  if (!s.ok()) return s;
  if (!freed.ok()) return freed;
  if (host != kNone) index = static_cast<long long>(host);
  return Status::success();
}

}  // namespace psa::gpu
