// The kernel source shared by every instruction set: included by portable.cc and avx2.cc
// inside their own namespace, so the compiler vectorises the same code for each target. GCC
// and Clang vector types (8 float lanes) lower to one AVX register, or to two SSE/NEON ones.
// Only builtins and functions defined here are used: an inline library template instantiated
// under -mavx2 could be merged by the linker into the baseline's code. All of it has internal
// linkage: the ISA-specific code is reachable only through kKernels.

namespace {

using vf = float __attribute__((vector_size(32)));
using vi = std::int32_t __attribute__((vector_size(32)));
using vd = double __attribute__((vector_size(64)));
using vl = std::int64_t __attribute__((vector_size(64)));
constexpr int kLanes = 8;

inline vf load(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{x, x, x, x, x, x, x, x}; }
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

void scores(const float* q, int qPitch, const float* kt, int ktPitch, int depth, int rows, int cols, float scale, float* s, int sPitch) {
  for (int r = 0; r < rows; r += 4) {
    const float* q0 = q + r * qPitch;
    const float* q1 = q0 + qPitch;
    const float* q2 = q1 + qPitch;
    const float* q3 = q2 + qPitch;
    for (int c = 0; c < cols; c += 16) {
      vf a00{}, a01{}, a10{}, a11{}, a20{}, a21{}, a30{}, a31{};
      const float* k = kt + c;
      for (int d = 0; d < depth; d++, k += ktPitch) {
        const vf k0 = load(k);
        const vf k1 = load(k + 8);
        vf b = splat(q0[d]);
        a00 += b * k0;
        a01 += b * k1;
        b = splat(q1[d]);
        a10 += b * k0;
        a11 += b * k1;
        b = splat(q2[d]);
        a20 += b * k0;
        a21 += b * k1;
        b = splat(q3[d]);
        a30 += b * k0;
        a31 += b * k1;
      }
      float* out = s + r * sPitch + c;
      store(out, a00 * scale);
      store(out + 8, a01 * scale);
      store(out + sPitch, a10 * scale);
      store(out + sPitch + 8, a11 * scale);
      store(out + 2 * sPitch, a20 * scale);
      store(out + 2 * sPitch + 8, a21 * scale);
      store(out + 3 * sPitch, a30 * scale);
      store(out + 3 * sPitch + 8, a31 * scale);
    }
  }
}

void accumulate(const float* p, int pPitch, const float* v, int vPitch, int rows, int cols, int dims, float* o, int oPitch) {
  for (int r = 0; r < rows; r += 4) {
    const float* p0 = p + r * pPitch;
    const float* p1 = p0 + pPitch;
    const float* p2 = p1 + pPitch;
    const float* p3 = p2 + pPitch;
    for (int d = 0; d < dims; d += 16) {
      float* out = o + r * oPitch + d;
      vf a00 = load(out), a01 = load(out + 8);
      vf a10 = load(out + oPitch), a11 = load(out + oPitch + 8);
      vf a20 = load(out + 2 * oPitch), a21 = load(out + 2 * oPitch + 8);
      vf a30 = load(out + 3 * oPitch), a31 = load(out + 3 * oPitch + 8);
      const float* x = v + d;
      for (int c = 0; c < cols; c++, x += vPitch) {
        const vf v0 = load(x);
        const vf v1 = load(x + 8);
        vf b = splat(p0[c]);
        a00 += b * v0;
        a01 += b * v1;
        b = splat(p1[c]);
        a10 += b * v0;
        a11 += b * v1;
        b = splat(p2[c]);
        a20 += b * v0;
        a21 += b * v1;
        b = splat(p3[c]);
        a30 += b * v0;
        a31 += b * v1;
      }
      store(out, a00);
      store(out + 8, a01);
      store(out + oPitch, a10);
      store(out + oPitch + 8, a11);
      store(out + 2 * oPitch, a20);
      store(out + 2 * oPitch + 8, a21);
      store(out + 3 * oPitch, a30);
      store(out + 3 * oPitch + 8, a31);
    }
  }
}

// exp(x) for x <= 0 within about 1 ulp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so
// n ln2 is exact), e^r by its degree-7 minimax polynomial, 2^n in the exponent bits. Below
// -87.33 the result would be subnormal; it is 0 (invisible next to the row maximum's 1).
inline vf expNonPositive(vf x) {
  const vi underflow = x < splat(-87.33654f);
  x = vmax(x, splat(-87.33654f));
  const vf n = vfloor(x * 1.44269504088896341f + 0.5f);
  const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * (r * r) + r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
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

TopKBucket topKBucket(const float* s, int width, float lo, float step, long long k, int* counts, float* candidates) {
  for (int i = 0; i < kLanes * kTopKBuckets; i++) counts[i] = 0;
  const vf vlo = splat(lo), vstep = splat(step);
  // One histogram per lane: runs of scores in one bucket do not wait on each other's increments.
  for (int c = 0; c < width; c += kLanes) {
    const vi b = buckets(load(s + c), vlo, vstep);
    for (int l = 0; l < kLanes; l++) {
      if (b[l] >= 0) counts[l * kTopKBuckets + b[l]]++;
    }
  }
  TopKBucket out{0, 0};
  int bucket = kTopKBuckets - 1;
  for (;; bucket--) {
    int inBucket = 0;
    for (int l = 0; l < kLanes; l++) inBucket += counts[l * kTopKBuckets + bucket];
    if (out.above + inBucket >= k || bucket == 0) break;
    out.above += inBucket;
  }
  const vi wanted = vi{} + bucket;
  for (int c = 0; c < width; c += kLanes) {
    const vf x = load(s + c);
    const vi hit = buckets(x, vlo, vstep) == wanted;
    if (!any(hit)) continue;
    for (int l = 0; l < kLanes; l++) {
      if (hit[l]) candidates[out.candidates++] = x[l];
    }
  }
  return out;
}

const Kernels kKernels = {PSA_CPU_KERNELS_NAME, scores, accumulate, softmax, rowRange, topKBucket};

}  // namespace
