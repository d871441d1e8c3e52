// The host API of the CUDA layer, as the addon sees it: plain C++ types, no CUDA headers.
// Implemented by device_api.cu (compiled by nvcc where CUDA is enabled, or by g++ against the
// CPU execution model in the emulated build) and by device_api_none.cc (a build without CUDA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace psa::gpu {

// Outcome of a runtime call. code 0 is success; otherwise name is the runtime's error name
// (cudaErrorInsufficientDriver) and message says what was being done.
struct Status {
  int code = 0;
  std::string name;
  std::string message;
  bool ok() const { return code == 0; }
  static Status success() { return {}; }
};

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
  std::size_t totalMemory = 0;
  std::size_t freeMemory = 0;
};

struct RuntimeInfo {
  // Kernels compiled into this build (false: built without CUDA).
  bool compiled = false;
  // "cuda" for a real device build, "cuda-emu" for the CPU execution model.
  std::string flavor;
  int runtimeVersion = 0;  // 13000 for 13.0
  int driverVersion = 0;   // 0 when there is no driver
  std::vector<DeviceInfo> devices;
  // Why no device is usable (code != 0), from cudaGetDeviceCount or the build.
  Status error;
  // Compute capabilities the kernels were built for ("8.0 8.6 8.9 9.0 +PTX").
  std::string targets;
};

// Element types a device buffer holds.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };

std::size_t dtype_size(DType t);

// Probe the runtime once per call (cheap after the first: the runtime caches its state).
RuntimeInfo query_runtime();

// Success while the device is usable; after a sticky runtime error (an illegal address, a
// launch failure: the CUDA context is lost and every later call would fail the same way) the
// first such failure, for the rest of the process. Shared by every thread.
Status device_unusable();

// A device allocation. Owned by whoever holds it; release with free_buffer.
struct Buffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  int device = 0;
};

Status alloc_buffer(Buffer& out, std::size_t bytes, int device);
Status free_buffer(Buffer& buf);

// Copy n float32 values to the device and store them as `type` (rounding to nearest even on
// the device for 16-bit types). Blocks until done.
Status upload_f32(const float* host, std::size_t n, DType type, const Buffer& dst);
// Copy n raw 16-bit values (float16 or bfloat16 bit patterns) to the device as they are.
Status upload_raw16(const std::uint16_t* host, std::size_t n, const Buffer& dst);
// Read n values of `type` back as float32 (widening on the device). Blocks until done.
Status download_f32(const Buffer& src, DType type, std::size_t n, float* host);

#if defined(PSA_EMULATED)
// Tests only: launches a kernel that faults the way a device trap does, so the runtime reports
// cudaErrorLaunchFailure (a sticky error) through the ordinary launch path.
Status launch_faulting_kernel();
#endif

}  // namespace psa::gpu
