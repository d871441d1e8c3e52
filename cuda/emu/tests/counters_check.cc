// The model's performance counters (emu/counters.h) against planted access patterns whose
// costs are known by hand: bank-conflict ways of shared loads, stores, atomics and ldmatrix,
// global sectors against bytes used, cp.async bytes, barriers, Tensor Core FLOPs, exp2 calls,
// host allocations, frees and synchronisations. Prints "PASS <name>" or "FAIL <name>: <why>".
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../cuda_compat.h"
#include "../../primitives.cuh"
#include "../counters.h"
#include "check_util.h"

using namespace psa::gpu;
using psa::check::DeviceArray;
using psa::check::report;
using psa::emu::CounterSnapshot;
using psa::emu::KernelCounters;
namespace emu = psa::emu;

namespace {

std::string got(const char* what, unsigned long long v) { return std::string(what) + " " + std::to_string(v); }

// Expect each (name, value, wanted) to match; the report lists every figure.
struct Expect {
  std::string name;
  bool ok = true;
  std::string detail;
  void eq(const char* what, unsigned long long value, unsigned long long wanted) {
    detail += (detail.empty() ? "" : ", ") + got(what, value) + (value == wanted ? "" : " (want " + std::to_string(wanted) + ")");
    ok = ok && value == wanted;
  }
  ~Expect() { report(name, ok, detail); }
};

// Run `launch` with counting on; the one launch's record (and the host counts).
template <typename F>
CounterSnapshot counted(F&& launch) {
  emu::counters_enable(true);
  launch();
  CounterSnapshot s = emu::counters_take();
  emu::counters_enable(false);
  if (cudaGetLastError() != cudaSuccess) s.launches.clear();
  return s;
}

const KernelCounters& only(const CounterSnapshot& s) {
  static const KernelCounters none;
  return s.launches.size() == 1 ? s.launches[0] : none;
}

// ---- shared loads: lane l reads the 4-byte word l * stride (mod the buffer).
__global__ void shared_words_kernel(int stride, int* out) {
  PSA_DYNAMIC_SHARED(int, sm);
  const int lane = static_cast<int>(threadIdx.x);
  sm[lane] = 0;  // plain: not counted
  __syncthreads();
  out[lane] = ld(sm + (lane * stride) % 1024);
}

void check_shared_words(int stride, unsigned ways) {
  DeviceArray<int> out(32);
  const CounterSnapshot s = counted([&] {
    cudaMemset(out.ptr, 0, 128);
    PSA_LAUNCH(shared_words_kernel, 1, 32, 4096, cudaStreamPerThread)(stride, out.ptr);
  });
  const KernelCounters& k = only(s);
  Expect e{"shared 4-byte loads, word stride " + std::to_string(stride)};
  e.eq("requests", k.sharedLoad.requests, 1);
  e.eq("wavefronts", k.sharedLoad.wavefronts, ways);
  e.eq("ideal", k.sharedLoad.ideal, 1);
  e.eq("ways", k.sharedLoad.maxWays, ways);
  e.eq("bytes", k.sharedLoad.bytes, 128);
}

// ---- shared 16-byte stores: lane l writes 16 bytes at l * strideBytes. Served 8 lanes a phase.
__global__ void shared_vec_kernel(int strideBytes) {
  PSA_DYNAMIC_SHARED(unsigned char, sm);
  const int lane = static_cast<int>(threadIdx.x);
  uint4 z;
  z.x = z.y = z.z = z.w = 0u;
  st(reinterpret_cast<uint4*>(sm + lane * strideBytes), z);
}

void check_shared_vec(int strideBytes, unsigned ways) {
  const CounterSnapshot s = counted([&] { PSA_LAUNCH(shared_vec_kernel, 1, 32, 32 * 256, cudaStreamPerThread)(strideBytes); });
  const KernelCounters& k = only(s);
  Expect e{"shared 16-byte stores, stride " + std::to_string(strideBytes) + " bytes"};
  e.eq("wavefronts", k.sharedStore.wavefronts, 4ull * ways);
  e.eq("ideal", k.sharedStore.ideal, 4);
  e.eq("ways", k.sharedStore.maxWays, ways);
  e.eq("bytes", k.sharedStore.bytes, 512);
}

// ---- shared atomics: lane l adds to word bin(l); same-word lanes serialise (no broadcast).
__global__ void shared_atomic_kernel(int mode) {
  PSA_DYNAMIC_SHARED(unsigned, sm);
  const int lane = static_cast<int>(threadIdx.x);
  sm[lane] = 0u;
  __syncthreads();
  const int word = mode == 0 ? lane : mode == 1 ? 0 : (lane % 4) * 32;  // distinct; one word; 4 words of bank 0
  atomicAdd(&sm[word], 1u);
}

void check_shared_atomics(int mode, const char* what, unsigned ways) {
  const CounterSnapshot s = counted([&] { PSA_LAUNCH(shared_atomic_kernel, 1, 32, 4096, cudaStreamPerThread)(mode); });
  const KernelCounters& k = only(s);
  Expect e{std::string("shared atomics, ") + what};
  e.eq("requests", k.sharedAtomic.requests, 1);
  e.eq("wavefronts", k.sharedAtomic.wavefronts, ways);
  e.eq("ways", k.sharedAtomic.maxWays, ways);
}

// ---- ldmatrix.x4: matrix m's row r at (m * 8 + r) * strideHalves halves.
__global__ void ldmatrix_stride_kernel(int strideHalves, std::uint32_t* out) {
  PSA_DYNAMIC_SHARED(std::uint16_t, sm);
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 32 * strideHalves; i += 32) sm[i] = 0;
  __syncthreads();
  std::uint32_t r[4];
  ldmatrix<4, false>(r, sm + lane * strideHalves);
  out[lane] = r[0];
}

void check_ldmatrix(int strideHalves, unsigned ways) {
  DeviceArray<std::uint32_t> out(32);
  const CounterSnapshot s = counted([&] { PSA_LAUNCH(ldmatrix_stride_kernel, 1, 32, 32 * strideHalves * 2, cudaStreamPerThread)(strideHalves, out.ptr); });
  const KernelCounters& k = only(s);
  Expect e{"ldmatrix.x4, rows " + std::to_string(strideHalves) + " halves apart"};
  e.eq("requests", k.ldmatrix.requests, 1);
  e.eq("wavefronts", k.ldmatrix.wavefronts, 4ull * ways);
  e.eq("ideal", k.ldmatrix.ideal, 4);
  e.eq("ways", k.ldmatrix.maxWays, ways);
  e.eq("bytes", k.ldmatrix.bytes, 512);
}

// ---- global loads: lane l reads `bytes` at l * strideBytes; and predicated-off lanes.
template <typename T>
__global__ void global_load_kernel(const unsigned char* src, int strideBytes, int activeEvery, T* out) {
  const int lane = static_cast<int>(threadIdx.x);
  T sum{};
  for (int it = 0; it < 2; ++it) {
    const T* p = reinterpret_cast<const T*>(src + it * 4096 + lane * strideBytes);
    sum += ld_if(lane % activeEvery == 0, p, T{});
  }
  out[lane] = sum;
}

template <typename T>
void check_global(int strideBytes, int activeEvery, unsigned sectors, unsigned used) {
  DeviceArray<unsigned char> src(8192);
  DeviceArray<T> out(32);
  cudaMemset(src.ptr, 0, 8192);
  const CounterSnapshot s = counted([&] { PSA_LAUNCH(global_load_kernel<T>, 1, 32, 0, cudaStreamPerThread)(src.ptr, strideBytes, activeEvery, out.ptr); });
  const KernelCounters& k = only(s);
  Expect e{"global " + std::to_string(sizeof(T)) + "-byte loads, stride " + std::to_string(strideBytes) + ", every " + std::to_string(activeEvery) + " lane(s) active"};
  e.eq("requests", k.globalLoad.requests, 2);
  e.eq("sectors", k.globalLoad.sectors, 2ull * sectors);
  e.eq("bytes used", k.globalLoad.bytesUsed, 2ull * used);
}

// ---- cp.async: 128 threads copy 16 bytes each, rows of `rowBytes` apart every 8 threads.
__global__ void cp_async_kernel(const unsigned char* src, int rowBytes) {
  PSA_DYNAMIC_SHARED(unsigned char, sm);
  const int tid = static_cast<int>(threadIdx.x);
  cp_async_16(sm + tid * 16, src + (tid / 8) * rowBytes + (tid % 8) * 16);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  __syncthreads();
}

void check_cp_async(int rowBytes, unsigned sectorsPerWarp) {
  DeviceArray<unsigned char> src(16 * 1024);
  const CounterSnapshot s = counted([&] { PSA_LAUNCH(cp_async_kernel, 2, 128, 2048, cudaStreamPerThread)(src.ptr, rowBytes); });
  const KernelCounters& k = only(s);
  Expect e{"cp.async 16 bytes per thread, rows " + std::to_string(rowBytes) + " bytes apart"};
  e.eq("ctas", k.ctas, 2);
  e.eq("bytes", k.cpAsyncBytes, 2 * 128 * 16);
  e.eq("requests", k.cpAsyncGlobal.requests, 2 * 4);
  e.eq("sectors", k.cpAsyncGlobal.sectors, 2ull * 4 * sectorsPerWarp);
  e.eq("bytes used", k.cpAsyncGlobal.bytesUsed, 2 * 128 * 16);
  e.eq("shared wavefronts", k.cpAsyncShared.wavefronts, 2 * 4 * 4);
  e.eq("barriers", k.barriers, 2 * 2);
}

// ---- one mma and some exponentials; host allocations, frees, synchronisations.
__global__ void mma_exp_kernel(float* out) {
  const std::uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  mma_m16n8k16<MmaType::F16>(d, a, b, c);
  st(out + threadIdx.x, d[0] + ex2(1.0f) + ex2(2.0f));
}

void check_flops_exp_host() {
  const CounterSnapshot s = counted([&] {
    float* out = nullptr;
    cudaMalloc(&out, 128);
    PSA_LAUNCH(mma_exp_kernel, 3, 32, 0, cudaStreamPerThread)(out);
    cudaStreamSynchronize(cudaStreamPerThread);
    float host[32];
    cudaMemcpy(host, out, 128, cudaMemcpyDeviceToHost);
    cudaFree(out);
  });
  const KernelCounters& k = only(s);
  Expect e{"Tensor Core FLOPs, exp2 calls, host allocations, frees and syncs"};
  e.eq("flops", k.tensorFlops, 3 * 4096);
  e.eq("exp2", k.exp2, 3 * 32 * 2);
  e.eq("global store sectors", k.globalStore.sectors, 3 * 4);
  e.eq("allocations", s.host.allocations, 1);
  e.eq("frees", s.host.frees, 1);
  e.eq("syncs", s.host.syncs, 2);
}

// ---- counting off: nothing is recorded; the pure costs by hand.
void check_off_and_pure() {
  emu::counters_enable(false);
  DeviceArray<int> out(32);
  PSA_LAUNCH(shared_words_kernel, 1, 32, 4096, cudaStreamPerThread)(1, out.ptr);
  const CounterSnapshot s = emu::counters_take();
  Expect e{"counting off records nothing; costs of hand-made lane sets"};
  e.eq("launches", s.launches.size(), 0);
  // 8-byte accesses: half-warp phases; lanes 0..15 at 8 * l (one wavefront), 16..31 all on word pair 0/1 (broadcast).
  std::vector<emu::LaneAccess> lanes;
  for (unsigned l = 0; l < 32; ++l) lanes.push_back({l, l < 16 ? 8u * l : 0u});
  const emu::SharedCost c8 = emu::shared_cost(lanes, 8, false);
  e.eq("8-byte wavefronts", c8.wavefronts, 2);
  // 2-byte lanes at 2 * l: 16 words, one wavefront; the same lanes as atomics: 2 per word.
  lanes.clear();
  for (unsigned l = 0; l < 32; ++l) lanes.push_back({l, 2u * l});
  e.eq("2-byte wavefronts", emu::shared_cost(lanes, 2, false).wavefronts, 1);
  e.eq("2-byte atomic ways", emu::shared_cost(lanes, 2, true).ways, 2);
  // Global: 2 bytes per lane, lanes 16 bytes apart: 16 sectors of 32 bytes for 64 bytes used (12.5%).
  lanes.clear();
  for (unsigned l = 0; l < 32; ++l) lanes.push_back({l, 4096u + 16u * l});
  const emu::GlobalCost g = emu::global_cost(lanes, 2);
  e.eq("sectors", g.sectors, 16);
  e.eq("bytes used", g.bytesUsed, 64);
}

// ---- launches summed per kernel name.
void check_by_kernel() {
  DeviceArray<int> out(32);
  const CounterSnapshot s = counted([&] {
    PSA_LAUNCH(shared_words_kernel, 1, 32, 4096, cudaStreamPerThread)(1, out.ptr);
    PSA_LAUNCH(shared_vec_kernel, 1, 32, 8192, cudaStreamPerThread)(16);
    PSA_LAUNCH(shared_words_kernel, 1, 32, 4096, cudaStreamPerThread)(32, out.ptr);
  });
  const auto kernels = emu::counters_by_kernel(s.launches);
  Expect e{"launch records summed per kernel"};
  e.eq("launches", s.launches.size(), 3);
  e.eq("kernels", kernels.size(), 2);
  if (kernels.size() == 2) {
    e.eq("first kernel's launches", kernels[0].launches, 2);
    e.eq("first kernel's wavefronts", kernels[0].sharedLoad.wavefronts, 1 + 32);
    e.eq("first kernel's worst ways", kernels[0].sharedLoad.maxWays, 32);
    e.eq("first kernel's barriers", kernels[0].barriers, 2);
  }
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  check_shared_words(1, 1);
  check_shared_words(2, 2);
  check_shared_words(32, 32);
  check_shared_words(0, 1);  // every lane one word: a broadcast
  check_shared_words(33, 1);
  check_shared_vec(16, 1);
  check_shared_vec(128, 8);
  check_shared_vec(144, 1);
  check_shared_atomics(0, "distinct words", 1);
  check_shared_atomics(1, "one word", 32);
  check_shared_atomics(2, "4 words of one bank", 32);
  check_ldmatrix(64, 8);  // 128-byte rows: every row of a matrix on banks 0-3
  check_ldmatrix(72, 1);  // the tiles' padded stride (+16 bytes): conflict-free
  check_global<float>(4, 1, 4, 128);
  check_global<float>(32, 1, 32, 128);
  check_global<std::uint16_t>(16, 1, 16, 64);
  check_global<float>(4, 2, 4, 64);
  check_cp_async(128, 16);  // 4 rows of 128 bytes per warp: 16 sectors, all used
  check_cp_async(256, 16);
  check_flops_exp_host();
  check_off_and_pure();
  check_by_kernel();
  std::printf("%d failed\n", psa::check::failures);
  return psa::check::failures ? 1 : 0;
}
