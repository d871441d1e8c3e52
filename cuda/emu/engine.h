// The execution engine of the CPU model: runs the blocks of a launch one at a time, each CUDA
// thread a fiber (or, with PSA_EMU_THREADS, an OS thread, for ThreadSanitizer), and gives the
// device-side API its primitives: block barriers, warp collectives, the per-thread context,
// shared memory and misuse reports.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <string>

namespace psa::emu {

// Thrown inside a CUDA thread to abandon the launch after a reported misuse.
struct Abort {};

// Record a misuse (first one wins), then abandon the launch. Never returns.
[[noreturn]] void fail(const std::string& what, std::source_location loc);

struct ThreadContext;
ThreadContext& self();

// CUDA's built-in variables, for the macros in emu.h.
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
// Linear thread index in the block and lane / warp.
unsigned linear_tid();

// __syncthreads: every live thread of the block at the same barrier call site.
void block_barrier(std::source_location loc);

// A warp collective: each lane posts `in_bytes` of input; once every lane of the warp has
// arrived at the same call site with the same mask, `compute(inputs, outputs, lanes)` runs once
// over all lanes' 64-byte slots, then every lane gets its `out_bytes` back.
using WarpCompute = void (*)(const unsigned char (*in)[64], unsigned char (*out)[64], unsigned lanes, const void* extra);
void warp_collective(const char* op, unsigned mask, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes,
                     WarpCompute compute, const void* extra, std::source_location loc);

// Dynamic shared memory of the running block (poisoned with 0xFF bytes at block start).
void* dynamic_shared();
std::size_t dynamic_shared_bytes();
// True when [p, p + bytes) lies in this block's shared memory (dynamic or static).
bool in_shared(const void* p, std::size_t bytes);

// cp.async bookkeeping, per thread: copies are queued and delivered only at a wait.
void async_copy(void* dst, const void* src, std::size_t bytes, std::source_location loc);
void async_commit();
void async_wait(int pending_groups_allowed);

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  std::size_t dynamic_shared = 0;
  const void* function = nullptr;  // identity, for cudaFuncSetAttribute limits
  const char* name = "";      // the launch's spelling of the kernel
  const char* launcher = "";  // the function that launched it (its template bindings)
};

// Run a kernel: `body` is called once per CUDA thread with that thread's context current.
// Returns cudaSuccess or the error a device would report (invalid configuration, launch failure).
cudaError_t run_kernel(const LaunchConfig& cfg, const std::function<void()>& body);

// The misuse report of the last failed launch on this OS thread ("" if none).
const std::string& last_failure();

// Per-function dynamic shared memory limit (cudaFuncSetAttribute).
void set_max_dynamic_shared(const void* function, int bytes);

}  // namespace psa::emu

namespace psa::emu {
// Make `err` the thread's pending error for cudaGetLastError (runtime.cc).
void record_launch_error(cudaError_t err);
}  // namespace psa::emu
