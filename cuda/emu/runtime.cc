// The CUDA runtime subset the launchers and handles use, on the host: one emulated device
// whose memory is host memory. Definitions match the declarations of cuda_runtime_api.h, so
// cuda/device_api.cu and every launcher compile unchanged. Launches are synchronous, so
// streams and events only keep their contracts (ordering is trivially kept).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "counters.h"
#include "emu.h"

namespace psa::emu {
namespace {

constexpr std::size_t kDeviceMemory = std::size_t(16) << 30;  // what cudaMemGetInfo reports

std::mutex g_mem_mutex;
std::map<const unsigned char*, std::size_t> g_allocations;  // base -> bytes
std::size_t g_allocated = 0;
thread_local cudaError_t t_pending = cudaSuccess;

cudaError_t set_error(cudaError_t err) {
  if (err != cudaSuccess) t_pending = err;
  return err;
}

// True when [p, p + n) lies inside one live allocation.
bool is_device_range(const void* p, std::size_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  std::lock_guard<std::mutex> g(g_mem_mutex);
  auto it = g_allocations.upper_bound(c);
  if (it == g_allocations.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + it->second;
}

cudaError_t check_copy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return cudaErrorInvalidValue;
  if ((dst_dev && !is_device_range(dst, n)) || (src_dev && !is_device_range(src, n))) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// The device's stream-ordered pool (cudaMallocAsync): freed blocks are kept and handed out again
// for an allocation of the same size (exact sizes, so that AddressSanitizer still sees a write
// past the end); idle bytes above the release threshold go back at the next synchronisation, as
// the driver's pools do. Only memory obtained or given back counts as an allocation or a free.
struct Pool {
  std::uint64_t releaseThreshold = 0;
  std::multimap<std::size_t, void*> idle;  // bytes -> block
  std::size_t idleBytes = 0;
};
Pool g_pool;  // guarded by g_mem_mutex
char g_pool_handle;

void register_block(void* mem, std::size_t n) {
  g_allocations[static_cast<unsigned char*>(mem)] = n;
  g_allocated += n;
}

// Give idle pool memory above the threshold back (a synchronisation point).
void trim_pool() {
  std::lock_guard<std::mutex> g(g_mem_mutex);
  while (g_pool.idleBytes > g_pool.releaseThreshold && !g_pool.idle.empty()) {
    auto it = g_pool.idle.begin();
    g_pool.idleBytes -= it->first;
    std::free(it->second);
    g_pool.idle.erase(it);
    count_host(HostEvent::Free);
  }
}

void synchronised() {
  count_host(HostEvent::Sync);
  trim_pool();
}

struct Event {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

}  // namespace

void record_launch_error(cudaError_t err) { set_error(err); }

bool is_device_memory(const void* p, std::size_t n) { return is_device_range(p, n); }

}  // namespace psa::emu

using namespace psa::emu;

cudaError_t cudaMalloc(void** p, size_t n) {
  if (!p) return set_error(cudaErrorInvalidValue);
  // The exact size (no rounding slack), so AddressSanitizer sees a write one element past the end.
  void* mem = nullptr;
  if (posix_memalign(&mem, 256, n ? n : 1) != 0) return set_error(cudaErrorMemoryAllocation);
  std::memset(mem, 0xFF, n);  // device memory starts as garbage, not zeros
  {
    std::lock_guard<std::mutex> g(g_mem_mutex);
    register_block(mem, n);
  }
  count_host(HostEvent::Allocation);
  *p = mem;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> g(g_mem_mutex);
    auto it = g_allocations.find(static_cast<unsigned char*>(p));
    if (it == g_allocations.end()) return set_error(cudaErrorInvalidValue);
    g_allocated -= it->second;
    g_allocations.erase(it);
  }
  std::free(p);
  count_host(HostEvent::Free);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  if (!p) return set_error(cudaErrorInvalidValue);
  const std::size_t bytes = n ? n : 1;
  count_host(HostEvent::HandOut);
  {
    std::lock_guard<std::mutex> g(g_mem_mutex);
    auto it = g_pool.idle.find(bytes);
    if (it != g_pool.idle.end()) {
      void* mem = it->second;
      g_pool.idleBytes -= bytes;
      g_pool.idle.erase(it);
      std::memset(mem, 0xFF, bytes);  // what a reused block holds is garbage too
      register_block(mem, bytes);
      *p = mem;
      return cudaSuccess;
    }
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, 256, bytes) != 0) return set_error(cudaErrorMemoryAllocation);
  std::memset(mem, 0xFF, bytes);
  {
    std::lock_guard<std::mutex> g(g_mem_mutex);
    register_block(mem, bytes);
  }
  count_host(HostEvent::Allocation);
  *p = mem;
  return cudaSuccess;
}

cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> g(g_mem_mutex);
  auto it = g_allocations.find(static_cast<unsigned char*>(p));
  if (it == g_allocations.end()) return set_error(cudaErrorInvalidValue);
  const std::size_t bytes = it->second;
  g_allocated -= bytes;
  g_allocations.erase(it);
  g_pool.idle.emplace(bytes, p);
  g_pool.idleBytes += bytes;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *pool = reinterpret_cast<cudaMemPool_t>(&g_pool_handle);
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (pool != reinterpret_cast<cudaMemPool_t>(&g_pool_handle) || !value) return set_error(cudaErrorInvalidValue);
  if (attr == cudaMemPoolAttrReleaseThreshold) {
    std::lock_guard<std::mutex> g(g_mem_mutex);
    std::memcpy(&g_pool.releaseThreshold, value, sizeof g_pool.releaseThreshold);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0 || !value) return set_error(cudaErrorInvalidValue);
  switch (attr) {
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    // An sm_90's shared memory per SM (228 KB): the launchers pick their tiles for it.
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = 228 * 1024; break;
    default: *value = 0;
  }
  return cudaSuccess;
}

namespace {
cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (cudaError_t e = check_copy(dst, src, n, kind)) return set_error(e);
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
}  // namespace

// A synchronous copy waits for the device: a host synchronisation.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  synchronised();
  return copy(dst, src, n, kind);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t) { return copy(dst, src, n, kind); }

cudaError_t cudaMemset(void* p, int value, size_t n) {
  if (n && !is_device_range(p, n)) return set_error(cudaErrorInvalidValue);
  if (n) std::memset(p, value, n);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) { return cudaMemset(p, value, n); }
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  synchronised();
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  synchronised();
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_pending;
  t_pending = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_pending; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  // A failed launch carries the model's report of what went wrong (which thread, which line).
  if ((e == cudaErrorLaunchFailure || e == cudaErrorInvalidConfiguration || e == cudaErrorInvalidValue) && !last_failure().empty()) {
    return last_failure().c_str();
  }
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "psa CPU execution model (sm_80 rules)", sizeof prop->name - 1);
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->totalGlobalMem = kDeviceMemory;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 163 * 1024;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  std::lock_guard<std::mutex> g(g_mem_mutex);
  *total = kDeviceMemory;
  *free_bytes = kDeviceMemory > g_allocated ? kDeviceMemory - g_allocated : 0;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = reinterpret_cast<cudaStream_t>(new char(0));
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete reinterpret_cast<char*>(s);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new Event());
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  auto* ev = reinterpret_cast<Event*>(e);
  ev->at = std::chrono::steady_clock::now();
  ev->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) {
  synchronised();
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  auto* a = reinterpret_cast<Event*>(start);
  auto* b = reinterpret_cast<Event*>(end);
  if (!a->recorded || !b->recorded) return set_error(cudaErrorInvalidValue);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > 163 * 1024) return set_error(cudaErrorInvalidValue);
    set_max_dynamic_shared(func, value);
  }
  return cudaSuccess;
}
