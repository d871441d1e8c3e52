// Device primitives that need inline PTX, each beside its host twin: the twin is what the
// emulated build runs (a warp collective in the CPU model), and the only code of the project
// that the emulation does not execute is the asm string next to it. Keep them tiny.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"),
// with g = lane >> 2 and t = lane & 3; element i of a fragment is half (i & 1) of register i >> 1:
//   A 16x16 (row-major): element i at row g + 8*((i >> 1) & 1), col 2t + (i & 1) + 8*(i >> 2)
//   B 16x8  (k x n):     element i at row 2t + (i & 1) + 8*(i >> 1), col g
//   C/D 16x8 (f32):      element i at row g + 8*(i >> 1), col 2t + (i & 1)
#pragma once

#include <cstdint>

#include "cuda_compat.h"

#if defined(PSA_EMULATED)
#include <source_location>

#include "emu/counters.h"
#define PSA_SITE , std::source_location psa_site = std::source_location::current()
#define PSA_SITE_ARG psa_site
#else
#define PSA_SITE
#endif

// Marks a stretch of a kernel in its PTX (comments between which the gate counts instructions
// and conditional branches, cuda/gate.json "regions"); nothing in the emulated build.
#if defined(PSA_EMULATED)
#define PSA_PTX_REGION_BEGIN(name)
#define PSA_PTX_REGION_END(name)
#else
#define PSA_PTX_REGION_BEGIN(name) asm volatile("// psa-region-begin " name)
#define PSA_PTX_REGION_END(name) asm volatile("// psa-region-end " name)
#endif

namespace psa::gpu {

// Element type of an mma operand.
enum class MmaType { F16, BF16 };

#if defined(PSA_EMULATED)
namespace twin {

float to_float(std::uint16_t bits, MmaType type);
// Fragment-layout maps, shared by the twins and by the layout tests.
inline int a_row(int lane, int i) { return (lane >> 2) + 8 * ((i >> 1) & 1); }
inline int a_col(int lane, int i) { return 2 * (lane & 3) + (i & 1) + 8 * (i >> 2); }
inline int b_row(int lane, int i) { return 2 * (lane & 3) + (i & 1) + 8 * (i >> 1); }
inline int b_col(int lane, int) { return lane >> 2; }
inline int c_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
inline int c_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

void mma_m16n8k16(MmaType type, float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const float (&c)[4],
                  std::source_location site);
void ldmatrix(int num, bool trans, std::uint32_t* regs, const void* row_address, std::source_location site);
float ex2(float x);
// One lane's load or store at `site`, for the model's counters (emu/counters.h).
void count_access(::psa::emu::Access kind, const void* address, unsigned bytes, std::source_location site);

}  // namespace twin
#endif

// D = A * B + C on Tensor Cores, 16x8x16, f32 accumulate.
// PTX ISA: "Warp-level Matrix Multiply-Accumulate Instructions: mma" (mma.sync.aligned.m16n8k16.row.col).
template <MmaType T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const float (&c)[4] PSA_SITE) {
#if defined(PSA_EMULATED)
  twin::mma_m16n8k16(T, d, a, b, c, PSA_SITE_ARG);
#else
  if constexpr (T == MmaType::BF16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  }
#endif
}

// Load 1, 2 or 4 8x8 matrices of 16-bit elements from shared memory; lanes 8i..8i+7 give the
// 16-byte-aligned row addresses of matrix i. Lane l gets, per matrix, row l/4, elements
// 2(l%4) and 2(l%4)+1 (with .trans: that column of the matrix instead).
// PTX ISA: "Warp-level matrix load instruction: ldmatrix" (ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16).
template <int Num, bool Trans>
__device__ __forceinline__ void ldmatrix(std::uint32_t (&r)[Num], const void* row_address PSA_SITE) {
  static_assert(Num == 1 || Num == 2 || Num == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(PSA_EMULATED)
  twin::ldmatrix(Num, Trans, r, row_address, PSA_SITE_ARG);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  if constexpr (Num == 1 && !Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(s));
  if constexpr (Num == 1 && Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(s));
  if constexpr (Num == 2 && !Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
  if constexpr (Num == 2 && Trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
  if constexpr (Num == 4 && !Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
  if constexpr (Num == 4 && Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
#endif
}

// Start a 16-byte copy global -> shared that lands by the matching cp_async_wait.
// PTX ISA: "Data Movement and Conversion Instructions: cp.async" (cp.async.cg.shared.global, 16 bytes, L2 only).
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src PSA_SITE) {
#if defined(PSA_EMULATED)
  ::psa::emu::async_copy(smem_dst, gmem_src, 16, PSA_SITE_ARG);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src));
#endif
}

// Close the current group of cp.async copies.
// PTX ISA: "cp.async.commit_group".
__device__ __forceinline__ void cp_async_commit() {
#if defined(PSA_EMULATED)
  ::psa::emu::async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Wait until at most N committed groups are still in flight (their data is then visible to
// this thread; other threads need a __syncthreads after).
// PTX ISA: "cp.async.wait_group".
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(PSA_EMULATED)
  ::psa::emu::async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// 2^x on the special function unit, subnormal results flushed to zero (2^-inf = 0): one MUFU
// instruction, where exp2f adds range handling for subnormals. The exponentials the counters
// count as exp2. PTX ISA: "ex2" (ex2.approx.ftz.f32, maximum relative error 2^-22).
__device__ __forceinline__ float ex2(float x) {
#if defined(PSA_EMULATED)
  return twin::ex2(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
#endif
}

// A plain load or store, shared or global memory, that the emulated build's counters see (one
// lane of a warp instruction at this site). The _if forms are the predicated instruction: every
// lane reaches the site and only `active` ones touch memory, so that lanes a bound masks off do
// not shift the count of the others' instructions. Kernels route the accesses whose traffic
// matters (tile copies, histograms, outputs) through these.
template <typename T>
__device__ __forceinline__ T ld(const T* p PSA_SITE) {
#if defined(PSA_EMULATED)
  twin::count_access(::psa::emu::Access::Load, p, sizeof(T), PSA_SITE_ARG);
#endif
  return *p;
}

template <typename T>
__device__ __forceinline__ T ld_if(bool active, const T* p, T otherwise PSA_SITE) {
#if defined(PSA_EMULATED)
  twin::count_access(::psa::emu::Access::Load, active ? p : nullptr, sizeof(T), PSA_SITE_ARG);
#endif
  return active ? *p : otherwise;
}

template <typename T>
__device__ __forceinline__ void st(T* p, T v PSA_SITE) {
#if defined(PSA_EMULATED)
  twin::count_access(::psa::emu::Access::Store, p, sizeof(T), PSA_SITE_ARG);
#endif
  *p = v;
}

template <typename T>
__device__ __forceinline__ void st_if(bool active, T* p, T v PSA_SITE) {
#if defined(PSA_EMULATED)
  twin::count_access(::psa::emu::Access::Store, active ? p : nullptr, sizeof(T), PSA_SITE_ARG);
#endif
  if (active) *p = v;
}

// atomicAdd by the lanes where `active` holds (predicated, as st_if).
template <typename T>
__device__ __forceinline__ void atomic_add_if(bool active, T* p, T v PSA_SITE) {
#if defined(PSA_EMULATED)
  if (active) {
    atomicAdd(p, v, PSA_SITE_ARG);
  } else {
    twin::count_access(::psa::emu::Access::Atomic, nullptr, sizeof(T), PSA_SITE_ARG);
  }
#else
  if (active) atomicAdd(p, v);
#endif
}

}  // namespace psa::gpu
