// Host twins of the inline-PTX primitives (cuda/primitives.cuh), as warp collectives of the
// CPU model. They follow the per-lane fragment layouts of the PTX ISA exactly, so a kernel
// that feeds the wrong lane the wrong element computes wrong numbers here too.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "../primitives.cuh"
#include "counters.h"

namespace psa::gpu::twin {
namespace {

struct MmaIn {
  std::uint32_t a[4];
  std::uint32_t b[2];
  float c[4];
};
static_assert(sizeof(MmaIn) <= 64);

std::uint16_t half_of(std::uint32_t reg, int which) { return static_cast<std::uint16_t>(which ? reg >> 16 : reg & 0xffffu); }

template <MmaType T>
void mma_compute(const unsigned char (*in)[64], unsigned char (*out)[64], unsigned lanes, const void*) {
  ::psa::emu::count_tensor_flops(2 * 16 * 8 * 16);
  float A[16][16], B[16][8], C[16][8];
  for (unsigned lane = 0; lane < lanes; lane++) {
    MmaIn v;
    std::memcpy(&v, in[lane], sizeof v);
    const int l = static_cast<int>(lane);
    for (int i = 0; i < 8; i++) A[a_row(l, i)][a_col(l, i)] = to_float(half_of(v.a[i >> 1], i & 1), T);
    for (int i = 0; i < 4; i++) B[b_row(l, i)][b_col(l, i)] = to_float(half_of(v.b[i >> 1], i & 1), T);
    for (int i = 0; i < 4; i++) C[c_row(l, i)][c_col(l, i)] = v.c[i];
  }
  // Products of 16-bit values are exact in float; the sum is float in k order (Tensor Cores
  // round differently, so compare with tolerances).
  for (unsigned lane = 0; lane < lanes; lane++) {
    float d[4];
    const int l = static_cast<int>(lane);
    for (int i = 0; i < 4; i++) {
      float acc = C[c_row(l, i)][c_col(l, i)];
      for (int k = 0; k < 16; k++) acc += A[c_row(l, i)][k] * B[k][c_col(l, i)];
      d[i] = acc;
    }
    std::memcpy(out[lane], d, sizeof d);
  }
}

struct LdmatrixShape {
  int num;
  bool trans;
};

void ldmatrix_compute(const unsigned char (*in)[64], unsigned char (*out)[64], unsigned lanes, const void* extra) {
  const auto* shape = static_cast<const LdmatrixShape*>(extra);
  if (::psa::emu::counters_enabled()) {
    std::vector<::psa::emu::LaneAccess> rows;
    for (unsigned lane = 0; lane < 8u * static_cast<unsigned>(shape->num) && lane < lanes; lane++) {
      const void* p;
      std::memcpy(&p, in[lane], sizeof p);
      rows.push_back(::psa::emu::LaneAccess{lane, reinterpret_cast<std::uintptr_t>(p)});
    }
    ::psa::emu::count_ldmatrix(rows);
  }
  for (unsigned lane = 0; lane < lanes; lane++) {
    std::uint32_t regs[4] = {0, 0, 0, 0};
    const int row = static_cast<int>(lane) / 4;
    const int col = 2 * (static_cast<int>(lane) % 4);
    for (int m = 0; m < shape->num; m++) {
      std::uint16_t lo, hi;
      const unsigned char* p;
      if (!shape->trans) {
        std::memcpy(&p, in[8 * m + row], sizeof p);  // row `row` of matrix m
        std::memcpy(&lo, p + 2 * col, 2);
        std::memcpy(&hi, p + 2 * (col + 1), 2);
      } else {
        const unsigned char* p0;
        const unsigned char* p1;
        std::memcpy(&p0, in[8 * m + col], sizeof p0);  // rows col and col+1, column `row`
        std::memcpy(&p1, in[8 * m + col + 1], sizeof p1);
        std::memcpy(&lo, p0 + 2 * row, 2);
        std::memcpy(&hi, p1 + 2 * row, 2);
      }
      regs[m] = std::uint32_t(lo) | (std::uint32_t(hi) << 16);
    }
    std::memcpy(out[lane], regs, sizeof regs);
  }
}

}  // namespace

float to_float(std::uint16_t bits, MmaType type) {
  if (type == MmaType::BF16) {
    const std::uint32_t w = std::uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
  }
  __half h;
  std::memcpy(&h, &bits, 2);
  return __half2float(h);
}

void mma_m16n8k16(MmaType type, float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const float (&c)[4],
                  std::source_location site) {
  MmaIn v;
  std::memcpy(v.a, a, sizeof v.a);
  std::memcpy(v.b, b, sizeof v.b);
  std::memcpy(v.c, c, sizeof v.c);
  const char* op = type == MmaType::BF16 ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16";
  ::psa::emu::warp_collective(op, 0xffffffffu, &v, sizeof v, d, sizeof d, type == MmaType::BF16 ? &mma_compute<MmaType::BF16> : &mma_compute<MmaType::F16>,
                              nullptr, site);
}

void ldmatrix(int num, bool trans, std::uint32_t* regs, const void* row_address, std::source_location site) {
  const unsigned lane = ::psa::emu::linear_tid() % 32;
  // Lanes beyond the matrices loaded give no address: only check the ones that are read.
  if (lane < 8u * static_cast<unsigned>(num)) {
    if (reinterpret_cast<std::uintptr_t>(row_address) % 16 != 0) ::psa::emu::fail("misaligned ldmatrix: row address is not 16-byte aligned", site);
    if (!::psa::emu::in_shared(row_address, 16)) ::psa::emu::fail("ldmatrix row address is not in this block's shared memory", site);
  }
  static const LdmatrixShape shapes[2][5] = {{{0, false}, {1, false}, {2, false}, {0, false}, {4, false}},
                                             {{0, true}, {1, true}, {2, true}, {0, true}, {4, true}}};
  std::uint32_t out[4];
  const char* op = trans ? "ldmatrix.trans" : "ldmatrix";
  ::psa::emu::warp_collective(op, 0xffffffffu, &row_address, sizeof row_address, out, sizeof out, &ldmatrix_compute, &shapes[trans][num], site);
  std::memcpy(regs, out, sizeof(std::uint32_t) * static_cast<unsigned>(num));
}

float ex2(float x) {
  ::psa::emu::count_exp2();
  const float y = std::exp2(x);
  return y < FLT_MIN ? 0.0f : y;  // .ftz: a subnormal result is flushed (y >= 0)
}

void count_access(::psa::emu::Access kind, const void* address, unsigned bytes, std::source_location site) {
  const unsigned tid = ::psa::emu::linear_tid();
  ::psa::emu::count_lane_access(kind, tid / 32, tid % 32, address, bytes, site);
}

}  // namespace psa::gpu::twin
