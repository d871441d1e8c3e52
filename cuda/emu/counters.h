// Performance counters of the CPU model: what a profiler reads on a device, counted from the
// addresses and warp operations the model sees. Off by default (a branch per event); when on,
// every launch gets one record:
//   Tensor Core FLOPs      2 * 16 * 8 * 16 per warp mma.m16n8k16;
//   shared memory          per warp instruction, wavefronts against the conflict-free minimum,
//                          32 banks of 4 bytes: a 1-4 byte access is served 32 lanes at a time,
//                          8 bytes 16 lanes, 16 bytes 8 lanes (ldmatrix: one 8-lane phase per
//                          matrix); a phase takes as many wavefronts as the most distinct words
//                          any one bank holds (one word read by many lanes is a broadcast;
//                          atomics serialise every lane on a bank, same word or not);
//   global memory          per warp instruction, 32-byte sectors touched against bytes used;
//   cp.async               bytes, and its global sectors and shared wavefronts as above;
//   barriers               completed __syncthreads of every CTA;
//   exp2                   per-thread exponentials (the ex2 primitive and exp2_poly);
// and, on the host side, device allocations, frees and host synchronisations.
//
// The lanes of one warp instruction are the lanes that reach one source site for the same n-th
// time since the warp's last barrier: exact where control flow is warp-uniform between barriers
// or predicated (primitives.cuh's ld_if/st_if), as the counted kernel sites are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

namespace psa::emu {

// Shared-memory traffic of one class of instruction.
struct SharedTraffic {
  std::uint64_t requests = 0;    // warp instructions
  std::uint64_t wavefronts = 0;  // as served
  std::uint64_t ideal = 0;       // without bank conflicts
  std::uint64_t bytes = 0;       // requested by the lanes
  unsigned maxWays = 0;          // worst instruction: wavefronts of its worst phase
};

// Global-memory traffic of one class of instruction.
struct GlobalTraffic {
  std::uint64_t requests = 0;   // warp instructions
  std::uint64_t sectors = 0;    // 32-byte sectors touched
  std::uint64_t bytesUsed = 0;  // distinct bytes the lanes asked for
};

struct KernelCounters {
  std::string name;
  std::uint64_t launches = 0;
  std::uint64_t ctas = 0;
  std::uint64_t tensorFlops = 0;
  SharedTraffic ldmatrix, sharedLoad, sharedStore, sharedAtomic, cpAsyncShared;
  GlobalTraffic globalLoad, globalStore, globalAtomic, cpAsyncGlobal;
  std::uint64_t cpAsyncBytes = 0;
  std::uint64_t barriers = 0;
  std::uint64_t exp2 = 0;
};

struct HostCounters {
  std::uint64_t allocations = 0;  // device memory obtained from the driver (cudaMalloc, a pool's growth)
  std::uint64_t frees = 0;        // device memory given back to the driver
  std::uint64_t syncs = 0;        // the host waited for the device (stream, device or event synchronisation, cudaMemcpy)
  std::uint64_t handOuts = 0;     // blocks handed out by the stream-ordered pool (cudaMallocAsync), grown or reused
};

struct CounterSnapshot {
  std::vector<KernelCounters> launches;  // one per launch, in launch order
  HostCounters host;
};

// Turn counting on or off; either way the counts so far are dropped.
void counters_enable(bool on);
bool counters_enabled();
// The counts since the last enable or take; they restart from zero.
CounterSnapshot counters_take();
// Launch records summed per kernel name, in order of first launch.
std::vector<KernelCounters> counters_by_kernel(const std::vector<KernelCounters>& launches);

// ---- Pure functions of one warp instruction's lanes (the tests plant patterns through these).
struct LaneAccess {
  unsigned lane;
  std::uintptr_t address;
};
struct SharedCost {
  unsigned wavefronts = 0, ideal = 0, ways = 0;
};
// A shared access of `bytes` (1, 2, 4, 8 or 16) per lane; `serialise`: atomics.
SharedCost shared_cost(const std::vector<LaneAccess>& lanes, unsigned bytes, bool serialise);
struct GlobalCost {
  unsigned sectors = 0, bytesUsed = 0;
};
GlobalCost global_cost(const std::vector<LaneAccess>& lanes, unsigned bytes);

// ---- Hooks of the engine, the runtime and the primitives' twins (no-ops while counting is off).
// CpAsync: the copy's global read; CpAsyncFill: its shared write.
enum class Access { Load, Store, Atomic, CpAsync, CpAsyncFill };
// The record's name: the launch's spelling of the kernel with the launcher's template parameters
// bound ("attention_forward_kernel<Traits, T>" in a launcher [with Traits = ForwardTraits<64>;
// MmaType T = F16] gives "attention_forward_kernel<ForwardTraits<64>, F16>").
std::string kernel_name(const char* spelled, const char* launcher);
void count_launch_begin(const char* spelled, const char* launcher, unsigned long long ctas);
void count_launch_end();
// One lane's access at `site`; grouped into warp instructions (see above) at the next barrier.
// A null address: the lane reached the site predicated off (it takes part in no access).
void count_lane_access(Access kind, unsigned warp, unsigned lane, const void* address, unsigned bytes, std::source_location site);
// Group and cost the pending lane accesses: every thread of the block waits at a barrier or has exited.
void count_flush_block();
void count_barrier();
// A whole warp instruction at once: ldmatrix rows (one 16-byte address per lane in 8-lane phases).
void count_ldmatrix(const std::vector<LaneAccess>& rows);
void count_tensor_flops(std::uint64_t flops);
void count_exp2();
enum class HostEvent { Allocation, Free, Sync, HandOut };
void count_host(HostEvent event);

}  // namespace psa::emu
