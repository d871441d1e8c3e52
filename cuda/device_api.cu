// The CUDA layer's host API over the CUDA runtime: device discovery, buffers, the
// float32 <-> 16-bit conversions, and the latch that marks the device unusable after a sticky
// error. Every call works on the calling thread's default stream (cudaStreamPerThread), so
// work from different libuv threads does not serialize.
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <string>

#include "cuda_compat.h"
#include "convert.cuh"
#include "device_api.h"
#include "runtime_status.h"

namespace psa::gpu {
namespace {

// Conversions go through a float32 staging buffer of at most this many elements.
constexpr std::size_t kStagingElements = std::size_t(1) << 24;
constexpr int kThreads = 256;

unsigned blocks_for(std::size_t n) {
  return static_cast<unsigned>(std::min<std::size_t>((n + kThreads - 1) / kThreads, 4096));
}

// Device memory comes from the device's stream-ordered pool (cudaMallocAsync on the calling
// thread's stream), which keeps what is freed for the next allocation instead of returning it
// to the driver: its release threshold is raised once per device, so a steady state of
// identical calls allocates nothing from the driver and a free does not synchronise the device.
// Devices without memory pools take cudaMalloc / cudaFree. Frees are ordered after the work
// already queued on the freeing thread's stream; every call synchronises its stream before its
// results are handed over, so a buffer freed later by another thread is idle.
bool uses_pool(int device) {
  constexpr int kUnknown = -1;
  static std::mutex mutex;
  static int known[64];
  static bool init = false;
  std::lock_guard<std::mutex> g(mutex);
  if (!init) {
    std::fill(std::begin(known), std::end(known), kUnknown);
    init = true;
  }
  if (device < 0 || device >= 64) return false;
  if (known[device] == kUnknown) {
    int supported = 0;
    cudaMemPool_t pool;
    bool ok = cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && supported &&
              cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess;
    if (ok) {
      std::uint64_t keep = ~std::uint64_t(0);
      ok = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
    }
    cudaGetLastError();  // an unsupported query is not the caller's error
    known[device] = ok ? 1 : 0;
  }
  return known[device] == 1;
}

// The current device's memory (cudaSetDevice done by the caller).
cudaError_t device_malloc(void** p, std::size_t bytes, int device) {
  return uses_pool(device) ? cudaMallocAsync(p, bytes, cudaStreamPerThread) : cudaMalloc(p, bytes);
}

cudaError_t device_free(void* p, int device) { return uses_pool(device) ? cudaFreeAsync(p, cudaStreamPerThread) : cudaFree(p); }

// Runs fn(offset, count, staging) over chunks of n elements with a device staging buffer.
template <typename Fn>
Status with_staging(std::size_t n, Fn fn) {
  int device = 0;
  PSA_TRY(cudaGetDevice(&device), "selecting the CUDA device");
  void* staging = nullptr;
  const std::size_t chunk = std::min(n, kStagingElements);
  PSA_TRY(device_malloc(&staging, chunk * sizeof(float), device), "allocating the conversion staging buffer");
  Status result;
  for (std::size_t off = 0; off < n && result.ok(); off += chunk) result = fn(off, std::min(chunk, n - off), static_cast<float*>(staging));
  Status freed = status_of(device_free(staging, device), "freeing the conversion staging buffer");
  return result.ok() ? freed : result;
}

template <typename T>
Status narrow_chunks(const float* host, std::size_t n, T* dst) {
  return with_staging(n, [&](std::size_t off, std::size_t count, float* staging) -> Status {
    PSA_TRY(cudaMemcpyAsync(staging, host + off, count * sizeof(float), cudaMemcpyHostToDevice, cudaStreamPerThread), "copying float32 data to the device");
    PSA_LAUNCH(narrow_f32_kernel<T>, blocks_for(count), kThreads, 0, cudaStreamPerThread)(staging, dst + off, count);
    PSA_TRY(cudaGetLastError(), "launching the float32 conversion kernel");
    PSA_TRY(cudaStreamSynchronize(cudaStreamPerThread), "converting float32 data on the device");
    return Status::success();
  });
}

template <typename T>
Status widen_chunks(const T* src, std::size_t n, float* host) {
  return with_staging(n, [&](std::size_t off, std::size_t count, float* staging) -> Status {
    PSA_LAUNCH(widen_to_f32_kernel<T>, blocks_for(count), kThreads, 0, cudaStreamPerThread)(src + off, staging, count);
    PSA_TRY(cudaGetLastError(), "launching the float32 widening kernel");
    PSA_TRY(cudaMemcpyAsync(host + off, staging, count * sizeof(float), cudaMemcpyDeviceToHost, cudaStreamPerThread), "copying float32 data to the host");
    PSA_TRY(cudaStreamSynchronize(cudaStreamPerThread), "reading data back from the device");
    return Status::success();
  });
}

// The errors the runtime documents as leaving the process in an inconsistent state ("any
// further CUDA work will return the same error"; driver_types.h of CUDA 13), by number, since
// older toolkits lack some of the names.
bool is_sticky(cudaError_t err) {
  switch (static_cast<int>(err)) {
    case 226:  // cudaErrorContained
    case 700:  // cudaErrorIllegalAddress
    case 702:  // cudaErrorLaunchTimeout
    case 710:  // cudaErrorAssert
    case 714:  // cudaErrorHardwareStackError
    case 715:  // cudaErrorIllegalInstruction
    case 716:  // cudaErrorMisalignedAddress
    case 717:  // cudaErrorInvalidAddressSpace
    case 718:  // cudaErrorInvalidPc
    case 719:  // cudaErrorLaunchFailure
    case 721:  // cudaErrorTensorMemoryLeak
    case 810:  // cudaErrorMpsClientTerminated
    case 911:  // cudaErrorExternalDevice
      return true;
    default:
      return false;
  }
}

// The first sticky failure of this process (code 0 until there is one). The CUDA context is
// per process, so one latch serves every thread.
std::mutex g_unusable_mutex;
Status g_unusable;

#if defined(PSA_EMULATED)
// Aborts its block as a device trap would (the model reports it as a launch failure).
__global__ void faulting_kernel() {
  ::psa::emu::fail("a fault the tests asked for", std::source_location::current());
}
#endif

}  // namespace

void note_failure(cudaError_t err, const Status& failure) {
  if (!is_sticky(err)) return;
  std::lock_guard<std::mutex> g(g_unusable_mutex);
  if (g_unusable.ok()) g_unusable = failure;
}

Status device_unusable() {
  std::lock_guard<std::mutex> g(g_unusable_mutex);
  return g_unusable;
}

#if defined(PSA_EMULATED)
Status launch_faulting_kernel() {
  PSA_LAUNCH(faulting_kernel, 1, 32, 0, cudaStreamPerThread)();
  PSA_TRY(cudaGetLastError(), "launching the faulting test kernel");
  return Status::success();
}
#endif

std::size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

RuntimeInfo query_runtime() {
  RuntimeInfo info;
  info.compiled = true;
#if defined(PSA_EMULATED)
  info.flavor = "cuda-emu";
#else
  info.flavor = "cuda";
#endif
  info.targets = PSA_CUDA_TARGETS;
  cudaRuntimeGetVersion(&info.runtimeVersion);
  if (cudaDriverGetVersion(&info.driverVersion) != cudaSuccess) info.driverVersion = 0;
  int count = 0;
  info.error = status_of(cudaGetDeviceCount(&count), "counting CUDA devices");
  if (!info.error.ok()) return info;
  for (int d = 0; d < count; d++) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    DeviceInfo dev;
    dev.index = d;
    dev.name = prop.name;
    dev.major = prop.major;
    dev.minor = prop.minor;
    dev.multiprocessors = prop.multiProcessorCount;
    dev.totalMemory = prop.totalGlobalMem;
    if (cudaSetDevice(d) == cudaSuccess) cudaMemGetInfo(&dev.freeMemory, &dev.totalMemory);
    cudaGetLastError();
    info.devices.push_back(dev);
  }
  return info;
}

Status alloc_buffer(Buffer& out, std::size_t bytes, int device) {
  PSA_TRY(cudaSetDevice(device), "selecting the CUDA device");
  void* ptr = nullptr;
  PSA_TRY(device_malloc(&ptr, std::max<std::size_t>(bytes, 1), device), "allocating device memory");
  out = Buffer{ptr, bytes, device};
  return Status::success();
}

Status free_buffer(Buffer& buf) {
  if (!buf.ptr) return Status::success();
  PSA_TRY(cudaSetDevice(buf.device), "selecting the CUDA device");
  Status s = status_of(device_free(buf.ptr, buf.device), "freeing device memory");
  buf.ptr = nullptr;
  buf.bytes = 0;
  return s;
}

Status upload_f32(const float* host, std::size_t n, DType type, const Buffer& dst) {
  PSA_TRY(cudaSetDevice(dst.device), "selecting the CUDA device");
  switch (type) {
    case DType::F32:
      PSA_TRY(cudaMemcpyAsync(dst.ptr, host, n * sizeof(float), cudaMemcpyHostToDevice, cudaStreamPerThread), "copying float32 data to the device");
      return status_of(cudaStreamSynchronize(cudaStreamPerThread), "copying float32 data to the device");
    case DType::F16:
      return narrow_chunks(host, n, static_cast<__half*>(dst.ptr));
    case DType::BF16:
      return narrow_chunks(host, n, static_cast<__nv_bfloat16*>(dst.ptr));
  }
  return Status{1, "cudaErrorInvalidValue", "unknown dtype"};
}

Status upload_raw16(const std::uint16_t* host, std::size_t n, const Buffer& dst) {
  PSA_TRY(cudaSetDevice(dst.device), "selecting the CUDA device");
  PSA_TRY(cudaMemcpyAsync(dst.ptr, host, n * sizeof(std::uint16_t), cudaMemcpyHostToDevice, cudaStreamPerThread), "copying 16-bit data to the device");
  return status_of(cudaStreamSynchronize(cudaStreamPerThread), "copying 16-bit data to the device");
}

Status download_f32(const Buffer& src, DType type, std::size_t n, float* host) {
  PSA_TRY(cudaSetDevice(src.device), "selecting the CUDA device");
  switch (type) {
    case DType::F32:
      PSA_TRY(cudaMemcpyAsync(host, src.ptr, n * sizeof(float), cudaMemcpyDeviceToHost, cudaStreamPerThread), "copying float32 data to the host");
      return status_of(cudaStreamSynchronize(cudaStreamPerThread), "copying float32 data to the host");
    case DType::F16:
      return widen_chunks(static_cast<const __half*>(src.ptr), n, host);
    case DType::BF16:
      return widen_chunks(static_cast<const __nv_bfloat16*>(src.ptr), n, host);
  }
  return Status{1, "cudaErrorInvalidValue", "unknown dtype"};
}

}  // namespace psa::gpu
