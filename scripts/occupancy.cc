// CTAs per SM from ptxas numbers, with NVIDIA's header-only occupancy calculator.
//
// Built on the fly by scripts/gate.js (g++ -std=c++17 -I <cuda include dir>); no GPU or CUDA
// runtime needed. Usage:
//   occupancy <cc major> <cc minor> <regs/thread> <static smem B> <dynamic smem B> <threads/block> [barriers]
// Prints one line: "<active blocks per SM> <limiting factors>", e.g. "8 warps".
//
// Per-SM limits are those of the CUDA C++ Programming Guide, "Technical Specifications per
// Compute Capability" table (also encoded in cuda_occupancy.h's cudaOccMaxBlocksPerMultiprocessor
// and cudaOccAlignUpShmemSizeVoltaPlus, which this program relies on):
//   cc     threads/SM  blocks/SM  regs/SM  regs/block  smem/SM   smem/block (opt-in)
//   8.0    2048        32         64K      64K         164 KB    163 KB   (A100)
//   8.6    1536        16         64K      64K         100 KB     99 KB   (GA10x, RTX 30xx / A10)
//   8.9    1536        24         64K      64K         100 KB     99 KB   (AD10x, RTX 40xx / L40)
//   9.0    2048        32         64K      64K         228 KB    227 KB   (H100)
// Every cc reserves 1 KB of shared memory per block for the system, and 48 KB per block is the
// limit unless a kernel opts in (cudaFuncAttributeMaxDynamicSharedMemorySize). Blocks/SM is
// not a cudaOccDeviceProp field: the header derives it from the compute capability.
#include <cuda_occupancy.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

struct ArchLimits {
  int major, minor;
  int maxThreadsPerSm;
  size_t smemPerSm;
  size_t smemPerBlockOptin;
  int numSms;  // a representative part; per-SM occupancy does not depend on it
};

constexpr ArchLimits kArchs[] = {
    {8, 0, 2048, 164 * 1024, 163 * 1024, 108},  // A100
    {8, 6, 1536, 100 * 1024, 99 * 1024, 82},    // RTX 3090
    {8, 9, 1536, 100 * 1024, 99 * 1024, 128},   // RTX 4090
    {9, 0, 2048, 228 * 1024, 227 * 1024, 132},  // H100 SXM
};

long parse(const char* s, const char* what) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 0) {
    std::fprintf(stderr, "occupancy: bad %s '%s'\n", what, s);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7 && argc != 8) {
    std::fprintf(stderr,
                 "usage: occupancy <major> <minor> <regs> <static smem> <dynamic smem> <threads> "
                 "[barriers]\n");
    return 2;
  }
  const int major = static_cast<int>(parse(argv[1], "major"));
  const int minor = static_cast<int>(parse(argv[2], "minor"));
  const ArchLimits* arch = nullptr;
  for (const ArchLimits& a : kArchs)
    if (a.major == major && a.minor == minor) arch = &a;
  if (!arch) {
    std::fprintf(stderr, "occupancy: no limits recorded for compute capability %d.%d\n", major, minor);
    return 2;
  }

  cudaOccDeviceProp prop;
  prop.computeMajor = major;
  prop.computeMinor = minor;
  prop.maxThreadsPerBlock = 1024;
  prop.maxThreadsPerMultiprocessor = arch->maxThreadsPerSm;
  prop.regsPerBlock = 64 * 1024;
  prop.regsPerMultiprocessor = 64 * 1024;
  prop.warpSize = 32;
  prop.sharedMemPerBlock = 48 * 1024;
  prop.sharedMemPerMultiprocessor = arch->smemPerSm;
  prop.numSms = arch->numSms;
  prop.sharedMemPerBlockOptin = arch->smemPerBlockOptin;
  prop.reservedSharedMemPerBlock = 1024;

  cudaOccFuncAttributes attr;
  attr.maxThreadsPerBlock = 1024;
  attr.numRegs = static_cast<int>(parse(argv[3], "regs"));
  attr.sharedSizeBytes = static_cast<size_t>(parse(argv[4], "static smem"));
  const size_t dynamicSmem = static_cast<size_t>(parse(argv[5], "dynamic smem"));
  const int threads = static_cast<int>(parse(argv[6], "threads"));
  attr.partitionedGCConfig = PARTITIONED_GC_OFF;
  // Above 48 KB per block a kernel must opt in; assume the launcher does so.
  if (attr.sharedSizeBytes + dynamicSmem > prop.sharedMemPerBlock) {
    attr.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;
    attr.maxDynamicSharedSizeBytes = prop.sharedMemPerBlockOptin - attr.sharedSizeBytes;
  } else {
    attr.shmemLimitConfig = FUNC_SHMEM_LIMIT_DEFAULT;
    attr.maxDynamicSharedSizeBytes = prop.sharedMemPerBlock - attr.sharedSizeBytes;
  }
  attr.numBlockBarriers = argc == 8 ? static_cast<int>(parse(argv[7], "barriers")) : 1;
  if (attr.numBlockBarriers < 1) attr.numBlockBarriers = 1;

  cudaOccDeviceState state;  // default carveout: the maximum shared memory configuration
  cudaOccResult result;
  const cudaOccError err =
      cudaOccMaxActiveBlocksPerMultiprocessor(&result, &prop, &attr, &state, threads, dynamicSmem);
  if (err != CUDA_OCC_SUCCESS) {
    std::fprintf(stderr, "occupancy: cudaOccMaxActiveBlocksPerMultiprocessor failed (%d)\n",
                 static_cast<int>(err));
    return 1;
  }

  char limits[128] = "";
  const struct {
    int bit;
    const char* name;
  } factors[] = {
      {OCC_LIMIT_WARPS, "warps"},
      {OCC_LIMIT_REGISTERS, "registers"},
      {OCC_LIMIT_SHARED_MEMORY, "smem"},
      {OCC_LIMIT_BLOCKS, "blocks"},
      {OCC_LIMIT_BARRIERS, "barriers"},
  };
  for (const auto& f : factors) {
    if (result.limitingFactors & f.bit) {
      if (limits[0]) std::strcat(limits, "+");
      std::strcat(limits, f.name);
    }
  }
  std::printf("%d %s\n", result.activeBlocksPerMultiprocessor, limits[0] ? limits : "-");
  return 0;
}
