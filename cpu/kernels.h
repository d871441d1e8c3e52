// The inner loops of the CPU forward, one set per instruction set: kernels.inl compiled once
// for the baseline (portable.cc) and once with AVX2+FMA (avx2.cc, x86-64 only), chosen at run
// time by the CPU's features. Everything else (masks, top-k, layouts, threads) is shared.
#pragma once

#include <cstdint>

namespace psa::cpu {

// Padding of the tiles the kernels take: rows in fours, key columns and channels in sixteens.
inline constexpr int kRowStep = 4;
inline constexpr int kColStep = 16;

struct RowSoftmax {
  float max;    // over the kept scores
  float sum;    // of E(s - max) over the kept scores
  int kept;     // scores that are finite and >= the threshold
};

struct Kernels {
  const char* name;
  // s[r][c] = scale * sum_d q[r][d] * kt[d][c], for rows % kRowStep == 0, cols % kColStep == 0.
  void (*scores)(const float* q, int qPitch, const float* kt, int ktPitch, int depth, int rows, int cols, float scale, float* s, int sPitch);
  // o[r][d] += sum_c p[r][c] * v[c][d], for rows % kRowStep == 0, dims % kColStep == 0.
  void (*accumulate)(const float* p, int pPitch, const float* v, int vPitch, int rows, int cols, int dims, float* o, int oPitch);
  // In place: s[c] becomes E(s[c] - max) where s[c] is finite and >= tau, else 0; width % 8 == 0.
  // E is exp (coefficients null) or the polynomial exp2 of the contract with c0..c_degree.
  RowSoftmax (*softmax)(float* s, int width, float tau, const float* coefficients, int degree);
};

const Kernels& portableKernels();
// Null where the AVX2+FMA set is not compiled in (not x86-64).
const Kernels* avx2Kernels();
// The best set this CPU runs (PSA_CPU_SIMD=portable forces the baseline).
const Kernels& bestKernels();

}  // namespace psa::cpu
