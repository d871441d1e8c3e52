// The kernel source shared by every instruction set: included by portable.cc, avx2.cc and
// avx512.cc inside their own namespace, so the compiler vectorises the same code for each
// target. GCC and Clang vector types of kLanes floats (PSA_CPU_LANES: 8 by default, one AVX
// register or two SSE/NEON ones; 16 for AVX-512) lower to the target's registers. Only builtins
// and functions defined here are used: an inline library template instantiated under -mavx2
// could be merged by the linker into the baseline's code. All of it has internal linkage: the
// ISA-specific code is reachable only through kKernels.

namespace {

#ifndef PSA_CPU_LANES
#define PSA_CPU_LANES 8
#endif
constexpr int kLanes = PSA_CPU_LANES;
static_assert(kColStep % kLanes == 0, "key columns and channels are padded to whole vectors");
using vf = float __attribute__((vector_size(4 * kLanes)));
using vi = std::int32_t __attribute__((vector_size(4 * kLanes)));
using vd = double __attribute__((vector_size(8 * kLanes)));
using vl = std::int64_t __attribute__((vector_size(8 * kLanes)));

inline vf load(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
// x - 0 is x for every x, so this folds to one broadcast (vf{} + x cannot fold: 0 + -0 is +0).
inline vf splat(float x) { return x - vf{}; }
inline vf select(vi mask, vf a, vf b) { return mask ? a : b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline bool any(vi mask) {
  std::uint64_t words[sizeof(vi) / 8];
  __builtin_memcpy(words, &mask, sizeof mask);
  std::uint64_t bits = 0;
  for (std::uint64_t w : words) bits |= w;
  return bits != 0;
}
// floor of values within int32 range.
inline vf vfloor(vf x) {
  const vf t = __builtin_convertvector(__builtin_convertvector(x, vi), vf);
  return t - select(t > x, splat(1.0f), splat(0.0f));
}

// Register tiles: R rows by C vectors of accumulators, all in registers (R * C + C + 1 of them:
// 11 of 16 for AVX2's 4 x 2, 19 of 32 for AVX-512's 8 x 2 and 4 x 4), so that each broadcast
// and each vector load feeds several independent FMAs.
constexpr int kScoreRows = kLanes == 16 ? 8 : 4;
constexpr int kScoreVectors = 2;
constexpr int kAccumulateVectors = kLanes == 16 ? 4 : 2;

// s[r][c..] = scale * sum_d q[r][d] * kt[d][c..] for R rows and C vectors of keys.
template <int R, int C>
inline void scoreTile(const float* q, int qPitch, const float* kt, int ktPitch, int depth, float scale, float* s, int sPitch) {
  vf acc[R][C] = {};
  for (int d = 0; d < depth; d++, kt += ktPitch) {
    vf k[C];
    for (int c = 0; c < C; c++) k[c] = load(kt + c * kLanes);
    for (int r = 0; r < R; r++) {
      const vf b = splat(q[r * qPitch + d]);
      for (int c = 0; c < C; c++) acc[r][c] += b * k[c];
    }
  }
  for (int r = 0; r < R; r++) {
    for (int c = 0; c < C; c++) store(s + r * sPitch + c * kLanes, acc[r][c] * scale);
  }
}

template <int R>
inline void scoreRows(const float* q, int qPitch, const float* kt, int ktPitch, int depth, int cols, float scale, float* s, int sPitch) {
  int c = 0;
  for (; c + kScoreVectors * kLanes <= cols; c += kScoreVectors * kLanes) scoreTile<R, kScoreVectors>(q, qPitch, kt + c, ktPitch, depth, scale, s + c, sPitch);
  for (; c < cols; c += kLanes) scoreTile<R, 1>(q, qPitch, kt + c, ktPitch, depth, scale, s + c, sPitch);
}

void scores(const float* q, int qPitch, const float* kt, int ktPitch, int depth, int rows, int cols, float scale, float* s, int sPitch) {
  int r = 0;
  for (; r + kScoreRows <= rows; r += kScoreRows) scoreRows<kScoreRows>(q + r * qPitch, qPitch, kt, ktPitch, depth, cols, scale, s + r * sPitch, sPitch);
  for (; r < rows; r += kRowStep) scoreRows<kRowStep>(q + r * qPitch, qPitch, kt, ktPitch, depth, cols, scale, s + r * sPitch, sPitch);
}

// o[r][d..] += sum_c p[r][c] * v[c][d..] for kRowStep rows and C vectors of channels.
template <int C>
inline void accumulateTile(const float* p, int pPitch, const float* v, int vPitch, int cols, float* o, int oPitch) {
  constexpr int R = kRowStep;
  vf acc[R][C];
  for (int r = 0; r < R; r++) {
    for (int d = 0; d < C; d++) acc[r][d] = load(o + r * oPitch + d * kLanes);
  }
  for (int c = 0; c < cols; c++, v += vPitch) {
    vf x[C];
    for (int d = 0; d < C; d++) x[d] = load(v + d * kLanes);
    for (int r = 0; r < R; r++) {
      const vf b = splat(p[r * pPitch + c]);
      for (int d = 0; d < C; d++) acc[r][d] += b * x[d];
    }
  }
  for (int r = 0; r < R; r++) {
    for (int d = 0; d < C; d++) store(o + r * oPitch + d * kLanes, acc[r][d]);
  }
}

void accumulate(const float* p, int pPitch, const float* v, int vPitch, int rows, int cols, int dims, float* o, int oPitch) {
  for (int r = 0; r < rows; r += kRowStep) {
    const float* pr = p + r * pPitch;
    float* orow = o + r * oPitch;
    int d = 0;
    for (; d + kAccumulateVectors * kLanes <= dims; d += kAccumulateVectors * kLanes) accumulateTile<kAccumulateVectors>(pr, pPitch, v + d, vPitch, cols, orow + d, oPitch);
    for (; d < dims; d += kLanes) accumulateTile<1>(pr, pPitch, v + d, vPitch, cols, orow + d, oPitch);
  }
}

// exp(x) for x <= 0 within about 1 ulp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so
// n ln2 is exact), e^r by its degree-7 minimax polynomial, 2^n in the exponent bits. Below
// -87.33 the result would be subnormal; it is 0 (invisible next to the row maximum's 1).
inline vf expNonPositive(vf x) {
  const vi underflow = x < splat(-87.33654f);
  x = vmax(x, splat(-87.33654f));
  // n = x log2 e rounded to an integer by the 1.5 * 2^23 shift (|x log2 e| < 2^22): the sum's
  // low mantissa bits are n, and n itself is the sum minus the shift.
  const vf shift = splat(12582912.0f);
  const vf shifted = x * 1.44269504088896341f + shift;
  const vf n = shifted - shift;
  const vi nBits = __builtin_bit_cast(vi, shifted) - __builtin_bit_cast(vi, shift);
  const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * (r * r) + r + 1.0f;
  const vi bits = (nBits + 127) << 23;
  return select(underflow, splat(0.0f), y * __builtin_bit_cast(vf, bits));
}

// The contract's polynomial exp2 (docs/contract.md#softmax-and-outputs): t = max(x log2 e, -127),
// n = floor(t), f = t - n, p by Horner with one rounding to float32 per step, E = p * 2^n
// rounded once. Steps run in double, where p * f is exact, so each rounds exactly as an FMA.
inline vf polyExp2(vf x, const float* c, int degree) {
  const vf t = vmax(x * 1.44269504088896341f, splat(-127.0f));
  const vf n = vfloor(t);
  const vd f = __builtin_convertvector(t - n, vd);
  vf p = splat(c[degree]);
  for (int d = degree - 1; d >= 0; d--) p = __builtin_convertvector(__builtin_convertvector(p, vd) * f + static_cast<double>(c[d]), vf);
  const vl bits = (__builtin_convertvector(__builtin_convertvector(n, vi), vl) + 1023) << 52;
  return __builtin_convertvector(__builtin_convertvector(p, vd) * __builtin_bit_cast(vd, bits), vf);
}

RowSoftmax softmax(float* s, int width, float tau, const float* coefficients, int degree) {
  const float inf = __builtin_inff();
  vf m = splat(-inf);
  vi kept{};
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi keep = (x >= splat(tau)) & (x > splat(-inf));
    m = vmax(m, select(keep, x, splat(-inf)));
    kept -= keep;
  }
  RowSoftmax out{-inf, 0.0f, 0};
  for (int l = 0; l < kLanes; l++) {
    out.max = m[l] > out.max ? m[l] : out.max;
    out.kept += kept[l];
  }
  vf sum{};
  const vf rowMax = splat(out.max);
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi keep = (x >= splat(tau)) & (x > splat(-inf));
    const vf shifted = select(keep, x - rowMax, splat(0.0f));
    const vf e = coefficients ? polyExp2(shifted, coefficients, degree) : expNonPositive(shifted);
    const vf pr = select(keep, e, splat(0.0f));
    sum += pr;
    store(s + c, pr);
  }
  for (int l = 0; l < kLanes; l++) out.sum += sum[l];
  return out;
}

RowRange rowRange(const float* s, int width) {
  const float inf = __builtin_inff();
  vf lo = splat(inf), hi = splat(-inf);
  vi allowed{};
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi finite = x > splat(-inf);
    allowed -= finite;
    lo = vmin(lo, select(finite, x, splat(inf)));
    hi = vmax(hi, x);
  }
  RowRange out{0, inf, -inf};
  for (int l = 0; l < kLanes; l++) {
    out.allowed += allowed[l];
    out.lo = lo[l] < out.lo ? lo[l] : out.lo;
    out.hi = hi[l] > out.hi ? hi[l] : out.hi;
  }
  return out;
}

// Bucket of each lane's score, -1 for -inf ((x - lo) * step is -inf, or NaN when step is 0,
// and vmax(NaN, -1) is -1).
inline vi buckets(vf x, vf lo, vf step) {
  const vi b = __builtin_convertvector(vmax((x - lo) * step, splat(-1.0f)), vi);
  const vi last = vi{} + (kTopKBuckets - 1);
  return b < last ? b : last;
}

// Per-lane histograms of one vector in `stride` (runs of scores in one bucket then do not wait
// on each other's increments); bucket -1 (-inf) counts in a slot below each lane's histogram.
// The lanes go through memory: scalar loads are cheaper than extracting lanes one by one.
inline void laneHistograms(const float* s, int width, int stride, vf lo, vf step, int* counts) {
  for (int i = 0; i < kLanes * (kTopKBuckets + 1); i++) counts[i] = 0;
  std::int32_t lane[kLanes];
  for (int c = 0; c < width; c += kLanes * stride) {
    const vi b = buckets(load(s + c), lo, step);
    __builtin_memcpy(lane, &b, sizeof b);
    __asm__ volatile("" : : "m"(lane));  // keep the store, so the reads below are plain loads
    for (int l = 0; l < kLanes; l++) counts[l * (kTopKBuckets + 1) + 1 + lane[l]]++;
  }
}

inline int bucketCount(const int* counts, int bucket) {
  int n = 0;
  for (int l = 0; l < kLanes; l++) n += counts[l * (kTopKBuckets + 1) + 1 + bucket];
  return n;
}

// Counts the finite scores in buckets above `high` and writes out those in [low, high].
inline TopKBucket band(const float* s, int width, vf lo, vf step, int low, int high, float* candidates) {
  TopKBucket out{0, 0};
  const vi vlow = vi{} + low, vhigh = vi{} + high;
  vi above{};
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi b = buckets(x, lo, step);
    above -= b > vhigh;
    const vi hit = (b >= vlow) & (b <= vhigh);
#if defined(__AVX512DQ__) && PSA_CPU_LANES == 16
    // One compressing store of the hits.
    const unsigned short lanes = __builtin_ia32_cvtd2mask512(hit);
    __builtin_ia32_compressstoresf512_mask(reinterpret_cast<vf*>(candidates + out.candidates), x, lanes);
    out.candidates += __builtin_popcount(lanes);
#else
    if (!any(hit)) continue;
    for (int l = 0; l < kLanes; l++) {
      if (hit[l]) candidates[out.candidates++] = x[l];
    }
#endif
  }
  for (int l = 0; l < kLanes; l++) out.above += above[l];
  return out;
}

// Rows this long are first histogrammed on one vector in kTopKSampleStride: the band of buckets
// around the sample's estimate of the k-th largest (3 standard deviations of the estimate on
// either side) is then counted exactly, and the full histogram runs only when it misses.
// Only with a compressing store: elsewhere writing out a band of 10% of the row lane by lane
// costs more than the full histogram saves.
constexpr int kTopKSampleStride = 4;
#if defined(__AVX512DQ__) && PSA_CPU_LANES == 16
constexpr int kTopKSampledWidth = 16 * kLanes * kTopKSampleStride;
#else
constexpr int kTopKSampledWidth = 1 << 30;
#endif

TopKBucket topKBucket(const float* s, int width, float lo, float step, long long k, int allowed, int* counts, float* candidates) {
  const vf vlo = splat(lo), vstep = splat(step);
  if (width >= kTopKSampledWidth) {
    laneHistograms(s, width, kTopKSampleStride, vlo, vstep, counts);
    int sampled = 0;
    for (int bucket = 0; bucket < kTopKBuckets; bucket++) sampled += bucketCount(counts, bucket);
    const double target = static_cast<double>(k) * sampled / allowed;
    const double margin = 3 * __builtin_sqrt(target + 1) + 2;
    int high = kTopKBuckets - 1, low = 0;
    double seen = 0;
    for (int bucket = kTopKBuckets - 1; bucket >= 0; bucket--) {
      const int n = bucketCount(counts, bucket);
      if (seen + n < target - margin) high = bucket - 1;
      seen += n;
      if (seen >= target + margin) {
        low = bucket;
        break;
      }
    }
    if (high >= low) {
      const TopKBucket out = band(s, width, vlo, vstep, low, high, candidates);
      if (out.above < k && out.above + out.candidates >= k) return out;
    }
  }
  laneHistograms(s, width, 1, vlo, vstep, counts);
  int above = 0;
  int bucket = kTopKBuckets - 1;
  for (; bucket > 0; bucket--) {
    const int n = bucketCount(counts, bucket);
    if (above + n >= k) break;
    above += n;
  }
  return band(s, width, vlo, vstep, bucket, bucket, candidates);
}

const Kernels kKernels = {PSA_CPU_KERNELS_NAME, scores, accumulate, softmax, rowRange, topKBucket};

}  // namespace
