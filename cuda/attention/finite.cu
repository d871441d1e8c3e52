// The first value of a device tensor that is not finite (or too large for a later
// conversion): one grid-stride pass, each thread stopping at its first hit; the smallest hit
// index wins by atomicMin, so the answer is the first such element whatever the schedule.
// Several tensors are checked with one wait for all (a call's q, k and v).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

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

Status first_non_finite(const ValueCheck* checks, std::size_t count, float bound, long long* indices) {
  struct Slot {
    int device = -1, word = -1;        // the shared word (device's array, bit `word`)
    Buffer own;                        // or its own, when every shared word is busy
    unsigned long long* first = nullptr;
    unsigned long long host = kNone;
  };
  std::vector<Slot> slots(count);
  Status s;
  // Every check's launch and result copy first, then one wait per device.
  for (std::size_t c = 0; c < count && s.ok(); ++c) {
    indices[c] = -1;
    const ValueCheck& v = checks[c];
    if (v.n == 0) continue;
    Slot& slot = slots[c];
    if (!(s = status_of(cudaSetDevice(v.src.device), "selecting the CUDA device")).ok()) break;
    slot.first = result_words().acquire(v.src.device, slot.word);
    if (slot.first) {
      slot.device = v.src.device;
    } else {
      if (!(s = alloc_buffer(slot.own, sizeof(unsigned long long), v.src.device)).ok()) break;
      slot.first = static_cast<unsigned long long*>(slot.own.ptr);
    }
    s = status_of(cudaMemcpyAsync(slot.first, &slot.host, sizeof slot.host, cudaMemcpyHostToDevice, cudaStreamPerThread), "initialising the value check");
    if (s.ok()) {
      switch (v.type) {
        case DType::F32: s = launch<float>(v.src.ptr, v.n, bound, slot.first); break;
        case DType::F16: s = launch<__half>(v.src.ptr, v.n, bound, slot.first); break;
        case DType::BF16: s = launch<__nv_bfloat16>(v.src.ptr, v.n, bound, slot.first); break;
      }
    }
    if (s.ok()) s = status_of(cudaMemcpyAsync(&slot.host, slot.first, sizeof slot.host, cudaMemcpyDeviceToHost, cudaStreamPerThread), "reading the value check's result");
  }
  // Wait on every device a copy was queued on, even after a failure: the host words must not
  // be written once this returns.
  std::vector<int> waited;
  for (std::size_t c = 0; c < count; ++c) {
    if (!slots[c].first) continue;
    const int device = checks[c].src.device;
    if (std::find(waited.begin(), waited.end(), device) != waited.end()) continue;
    waited.push_back(device);
    Status w = status_of(cudaSetDevice(device), "selecting the CUDA device");
    if (w.ok()) w = status_of(cudaStreamSynchronize(cudaStreamPerThread), "checking the values on the device");
    if (s.ok()) s = w;
  }
  for (std::size_t c = 0; c < count; ++c) {
    Slot& slot = slots[c];
    if (slot.word >= 0) result_words().release(slot.device, slot.word);  // after the synchronisation: the word is idle
    const Status freed = free_buffer(slot.own);
    if (s.ok()) s = freed;
    if (s.ok() && slot.first && slot.host != kNone) indices[c] = static_cast<long long>(slot.host);
  }
  return s;
}

}  // namespace psa::gpu
