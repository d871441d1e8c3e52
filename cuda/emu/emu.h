// The CUDA dialect on the CPU: what a .cu source sees when the emulated build compiles it with
// g++ (-DPSA_EMULATED). Built-in variables, barriers, warp shuffles and votes, atomics,
// shared memory and the launch macro, all running on the engine (engine.h). Kernels include
// this through cuda/cuda_compat.h, never directly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>

#include "counters.h"
#include "engine.h"

// Execution-space keywords have no meaning on the CPU. `__shared__` variables become statics:
// blocks run one at a time, so a static is exactly one block's shared object (zero-filled
// rather than poisoned: tile buffers belong in dynamic shared memory, which is poisoned).
#undef __shared__
#define __shared__ static
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

#define threadIdx (::psa::emu::thread_idx())
#define blockIdx (::psa::emu::block_idx())
#define blockDim (::psa::emu::block_dim())
#define gridDim (::psa::emu::grid_dim())
inline constexpr int warpSize = 32;

// Dynamic shared memory: `PSA_DYNAMIC_SHARED(T, name)` declares `T* name` in both builds.
#define PSA_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::psa::emu::dynamic_shared())

inline void __syncthreads(std::source_location loc = std::source_location::current()) { ::psa::emu::block_barrier(loc); }

namespace psa::emu {

template <typename T>
struct ShuffleIn {
  T value;
  int arg;
  int width;
};

enum class ShuffleKind { Index, Up, Down, Xor };

template <typename T, ShuffleKind K>
void shuffle_compute(const unsigned char (*in)[64], unsigned char (*out)[64], unsigned lanes, const void*) {
  for (unsigned lane = 0; lane < lanes; lane++) {
    ShuffleIn<T> me;
    std::memcpy(&me, in[lane], sizeof me);
    const int width = me.width;
    const int base = static_cast<int>(lane) & ~(width - 1);
    int src = static_cast<int>(lane);
    switch (K) {
      case ShuffleKind::Index: src = base + (me.arg & (width - 1)); break;
      case ShuffleKind::Up: src = (static_cast<int>(lane) - base >= me.arg) ? static_cast<int>(lane) - me.arg : static_cast<int>(lane); break;
      case ShuffleKind::Down: src = (static_cast<int>(lane) - base + me.arg < width) ? static_cast<int>(lane) + me.arg : static_cast<int>(lane); break;
      case ShuffleKind::Xor: {
        const int x = static_cast<int>(lane) ^ me.arg;
        src = (x & ~(width - 1)) == base ? x : static_cast<int>(lane);
        break;
      }
    }
    if (src >= static_cast<int>(lanes)) src = static_cast<int>(lane);
    ShuffleIn<T> from;
    std::memcpy(&from, in[src], sizeof from);
    std::memcpy(out[lane], &from.value, sizeof(T));
  }
}

template <ShuffleKind K, typename T>
T shuffle(const char* op, unsigned mask, T value, int arg, int width, std::source_location loc) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(ShuffleIn<T>) <= 64, "shuffle of an unsupported type");
  if (width <= 0 || width > 32 || (width & (width - 1))) fail(std::string(op) + " width must be a power of two in 1..32", loc);
  ShuffleIn<T> in{value, arg, width};
  T out;
  warp_collective(op, mask, &in, sizeof in, &out, sizeof out, &shuffle_compute<T, K>, nullptr, loc);
  return out;
}

enum class VoteKind { Ballot, All, Any };

template <VoteKind K>
void vote_compute(const unsigned char (*in)[64], unsigned char (*out)[64], unsigned lanes, const void*) {
  unsigned ballot = 0;
  for (unsigned lane = 0; lane < lanes; lane++) {
    int p;
    std::memcpy(&p, in[lane], sizeof p);
    if (p) ballot |= 1u << lane;
  }
  const unsigned full = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  const unsigned result = K == VoteKind::Ballot ? ballot : K == VoteKind::All ? unsigned(ballot == full) : unsigned(ballot != 0);
  for (unsigned lane = 0; lane < lanes; lane++) std::memcpy(out[lane], &result, sizeof result);
}

template <VoteKind K>
unsigned vote(const char* op, unsigned mask, int predicate, std::source_location loc) {
  int p = predicate != 0;
  unsigned out;
  warp_collective(op, mask, &p, sizeof p, &out, sizeof out, &vote_compute<K>, nullptr, loc);
  return out;
}

inline void no_compute(const unsigned char (*)[64], unsigned char (*)[64], unsigned, const void*) {}

}  // namespace psa::emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, std::source_location loc = std::source_location::current()) {
  return ::psa::emu::shuffle<::psa::emu::ShuffleKind::Index>("__shfl_sync", mask, v, src, width, loc);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, std::source_location loc = std::source_location::current()) {
  return ::psa::emu::shuffle<::psa::emu::ShuffleKind::Up>("__shfl_up_sync", mask, v, static_cast<int>(delta), width, loc);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, std::source_location loc = std::source_location::current()) {
  return ::psa::emu::shuffle<::psa::emu::ShuffleKind::Down>("__shfl_down_sync", mask, v, static_cast<int>(delta), width, loc);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, std::source_location loc = std::source_location::current()) {
  return ::psa::emu::shuffle<::psa::emu::ShuffleKind::Xor>("__shfl_xor_sync", mask, v, lane_mask, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int p, std::source_location loc = std::source_location::current()) {
  return ::psa::emu::vote<::psa::emu::VoteKind::Ballot>("__ballot_sync", mask, p, loc);
}
inline int __all_sync(unsigned mask, int p, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(::psa::emu::vote<::psa::emu::VoteKind::All>("__all_sync", mask, p, loc));
}
inline int __any_sync(unsigned mask, int p, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(::psa::emu::vote<::psa::emu::VoteKind::Any>("__any_sync", mask, p, loc));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
  int none = 0;
  ::psa::emu::warp_collective("__syncwarp", mask, &none, sizeof none, &none, 0, &::psa::emu::no_compute, nullptr, loc);
}

// Atomics: the GCC builtins are atomic in both execution modes (fibers and OS threads). Each
// is one lane of a warp's atomic instruction for the counters.
namespace psa::emu {
template <typename T>
void count_atomic(T* p, std::source_location loc) {
  const unsigned tid = linear_tid();
  count_lane_access(Access::Atomic, tid / 32, tid % 32, p, sizeof(T), loc);
}
}  // namespace psa::emu

template <typename T>
T atomicAdd(T* p, T v, std::source_location loc = std::source_location::current()) {
  ::psa::emu::count_atomic(p, loc);
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  } else {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T desired = old + v;
    while (!__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) desired = old + v;
    return old;
  }
}
template <typename T>
T atomicMax(T* p, T v, std::source_location loc = std::source_location::current()) {
  ::psa::emu::count_atomic(p, loc);
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v, std::source_location loc = std::source_location::current()) {
  ::psa::emu::count_atomic(p, loc);
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicExch(T* p, T v, std::source_location loc = std::source_location::current()) {
  ::psa::emu::count_atomic(p, loc);
  return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired, std::source_location loc = std::source_location::current()) {
  ::psa::emu::count_atomic(p, loc);
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}

// The typed conveniences <cuda_runtime.h> adds over the C API.
template <typename T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return ::cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <typename T>
cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

namespace psa::emu {

template <typename... Params>
struct BoundLaunch {
  void (*kernel)(Params...);
  LaunchConfig cfg;
  cudaStream_t stream;
  template <typename... Args>
  void operator()(Args&&... args) const {
    const std::tuple<Params...> params(std::forward<Args>(args)...);
    const cudaError_t err = run_kernel(cfg, [&] { std::apply(kernel, params); });
    record_launch_error(err);
  }
};

// `site`: the launcher's function, whose template bindings name an instantiation (counters.h).
template <typename... Params>
BoundLaunch<Params...> bind_launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, const char* name,
                                   std::source_location site = std::source_location::current()) {
  return BoundLaunch<Params...>{kernel, LaunchConfig{grid, block, smem, reinterpret_cast<const void*>(kernel), name, site.function_name()}, stream};
}

}  // namespace psa::emu

#define PSA_LAUNCH(kernel, grid, block, shared_bytes, stream) ::psa::emu::bind_launch(kernel, (grid), (block), (shared_bytes), (stream), #kernel)
