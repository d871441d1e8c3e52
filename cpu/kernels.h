// The inner loops of the CPU forward, one set per instruction set: kernels.inl compiled for the
// baseline (portable.cc), with AVX2+FMA (avx2.cc) and with AVX-512 (avx512.cc, both x86-64
// only), chosen at run time by the CPU's features. Everything else (masks, top-k, layouts, threads) is shared.
#pragma once

#include <cstdint>
#include <vector>

namespace psa::cpu {

// Padding of the tiles the kernels take: rows in fours, key columns and channels in sixteens.
inline constexpr int kRowStep = 4;
inline constexpr int kColStep = 16;

// The top-k histogram: equal buckets over a row's [lo, hi], counted in one copy per vector lane.
inline constexpr int kTopKBuckets = 256;
inline constexpr int kTopKCountsSize = 16 * (kTopKBuckets + 1);  // ints, enough for 16 lanes

struct RowRange {
  int allowed;  // finite scores
  float lo, hi; // their least and greatest (+inf, -inf when there are none)
};

struct TopKBucket {
  int above;       // finite scores in the buckets above the run
  int candidates;  // scores in the run, written out
};

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
  // In place: s[c] becomes E(s[c] - max) where s[c] is finite and >= tau, else 0; width % 16 == 0.
  // E is exp (coefficients null) or the polynomial exp2 of the contract with c0..c_degree.
  RowSoftmax (*softmax)(float* s, int width, float tau, const float* coefficients, int degree);
  // The count and range of the finite scores of s; width % 16 == 0.
  RowRange (*rowRange)(const float* s, int width);
  // Buckets min(kTopKBuckets - 1, trunc((x - lo) * step)) (a monotone function of x, so a
  // run of buckets is a range of scores): a run of them that holds the k-th largest of the
  // `allowed` finite scores (1 <= k <= allowed), the count above it, and its scores written to
  // `candidates` (width floats at most); `counts` holds kTopKCountsSize ints of scratch;
  // width % 16 == 0.
  TopKBucket (*topKBucket)(const float* s, int width, float lo, float step, long long k, int allowed, int* counts, float* candidates);
};

const Kernels& portableKernels();
// Null where the AVX2+FMA and AVX-512 sets are not compiled in (not x86-64).
const Kernels* avx2Kernels();
const Kernels* avx512Kernels();
// The sets this CPU runs, the baseline first.
std::vector<const Kernels*> supportedKernels();
// The best set this CPU runs (PSA_CPU_SIMD=portable or avx2 caps it).
const Kernels& bestKernels();

}  // namespace psa::cpu
