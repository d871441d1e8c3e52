// Block selection kernels (launched by select.cu; API and limits in select.h). Four steps:
//   pool   one CTA per (block, head, batch): the block's mean over its valid rows per channel in
//          float32 (q and k), for the bound estimate the per-channel min and max of k, and for
//          the moment estimate the per-channel population variance of k (two passes).
//   rank   one CTA per (query block I, query head or kv group, batch): the candidate key blocks
//          in ascending J, their estimates (one warp per candidate, lanes over channels), the
//          keep count, a bitonic sort of (estimate desc, J asc) keys in shared memory when the
//          count needs the order, and the chosen J as a bitmask row per query head.
//   rows   one warp per layout row: walks J ascending 32 at a time, classifies each tile in O(1)
//          (coverage helpers below), and either counts the row's entries or writes them.
//   scan   one CTA: offsets = exclusive scan of the counts (in place).
// Reference semantics: lib/reference/select.ts, lib/mask.ts, lib/layout.ts.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "bits.cuh"
#include "ceil_tolerant.cuh"
#include "params.h"
#include "select.h"

namespace psa::gpu {
namespace blocksel {

constexpr int kRankWarps = kRankThreads / 32;
constexpr int kRowWarps = kRowThreads / 32;
constexpr int kMaskWords = kSelectMaxKeyBlocks / 32;

// ---------------------------------------------------------------------------------------------
// The token mask of lib/mask.ts as O(1) tile tests. Every constraint on row i is monotone in i:
// the causal limit c_i is nondecreasing, so "row i reaches key x" is an up-set of rows, and the
// window [p - left, p + right] moves right with i. Each per-row predicate below is therefore an
// up-set, a down-set or an interval of rows, and a whole tile [i0, i1] is decided by its first
// and last rows (or by one interval intersection). select_check.cc compares every helper with
// a row-by-row port of lib/mask.ts.

enum Coverage : int { kCoverNone = 0, kCoverPartial = 1, kCoverFull = 2 };

struct MaskGeometry {
  long long seqQ = 0, seqK = 0;
  bool causal = false;
  long long left = -1, right = -1;  // left < 0: no window
  long long sinks = 0;              // keys j < sinks
};

__host__ __device__ inline long long lmin(long long a, long long b) { return a < b ? a : b; }
__host__ __device__ inline long long lmax(long long a, long long b) { return a > b ? a : b; }

// causalLimit: the last key row i may see (seqK - 1 when not causal; below 0: none).
__host__ __device__ inline long long causal_limit(const MaskGeometry& m, long long i) {
  const long long last = m.seqK - 1;
  return m.causal ? lmin(i + m.seqK - m.seqQ, last) : last;
}

// tileCoverage(selected = true): row i sees [j0, min(j1, c_i)]; c_i nondecreasing, so every row
// covers the tile iff the first does, and some row reaches it iff the last does.
__host__ __device__ inline int causal_coverage(const MaskGeometry& m, long long i0, long long i1, long long j0, long long j1) {
  if (causal_limit(m, i0) >= j1) return kCoverFull;
  return causal_limit(m, i1) >= j0 ? kCoverPartial : kCoverNone;
}

// Row i sees all of [j0, j1] through the window and sinks: c_i >= j1 (up-set), and the sinks
// cover it, or they cover [j0, a) with a = max(j0, sinks) and the window covers [a, j1]
// (p <= a + left: down-set; p >= j1 - right: up-set). The rows that qualify form an interval.
__host__ __device__ inline bool window_sink_row_full(const MaskGeometry& m, long long i, long long j0, long long j1) {
  if (causal_limit(m, i) < j1) return false;
  if (m.sinks > j1) return true;
  if (m.left < 0) return false;
  const long long p = i + m.seqK - m.seqQ;
  const long long a = lmax(j0, m.sinks);
  return p - m.left <= a && p + m.right >= j1;
}

// tileCoverage(selected = false). Full: the rows that are full form an interval, so both ends
// suffice. Some key: the sinks reach the tile from some row on (an up-set: test the last row),
// or the window does, which happens for p in [pLo, pHi]: p >= j0 - right, p >= j0 when causal
// (the limit must reach j0), p <= j1 + left (p - left <= c_i reduces to this since j1 < seqK).
__host__ __device__ inline int window_sink_coverage(const MaskGeometry& m, long long i0, long long i1, long long j0, long long j1) {
  if (window_sink_row_full(m, i0, j0, j1) && window_sink_row_full(m, i1, j0, j1)) return kCoverFull;
  if (m.sinks > j0 && causal_limit(m, i1) >= j0) return kCoverPartial;
  if (m.left >= 0) {
    const long long off = m.seqK - m.seqQ;
    const long long pLo = m.causal ? lmax(j0 - m.right, j0) : j0 - m.right;
    const long long pHi = j1 + m.left;
    if (i0 + off <= pHi && i1 + off >= pLo) return kCoverPartial;
  }
  return kCoverNone;
}

// Row i has a causally allowed key in [j0, j1] that is neither a sink nor in its window: the
// allowed keys are [j0, e] (e = min(j1, c_i)), the sinks take [j0, a) (a = max(j0, sinks)), and
// [a, e] must stick out of [p - left, p + right].
__host__ __device__ inline bool candidate_row(const MaskGeometry& m, long long i, long long j0, long long j1) {
  const long long e = lmin(j1, causal_limit(m, i));
  const long long a = lmax(j0, m.sinks);
  if (a > e) return false;
  if (m.left < 0) return true;
  const long long p = i + m.seqK - m.seqQ;
  return p - m.left > a || p + m.right < e;
}

// isCandidate over rows [i0, i1]. "a <= e and p - left > a" is an up-set (test the last row);
// "a <= e and p + right < e" never holds when causal (e <= p) and is a down-set otherwise (e is
// j1 for every row: test the first row).
__host__ __device__ inline bool is_candidate(const MaskGeometry& m, long long i0, long long i1, long long j0, long long j1) {
  return candidate_row(m, i1, j0, j1) || candidate_row(m, i0, j0, j1);
}

__host__ __device__ inline MaskGeometry mask_of(const Shape& s, const MaskSpec& mask) {
  MaskGeometry m;
  m.seqQ = s.seqQ;
  m.seqK = s.seqK;
  m.causal = mask.causal;
  m.left = mask.windowLeft;
  m.right = mask.windowRight;
  m.sinks = mask.globalTokens;
  return m;
}

// ---------------------------------------------------------------------------------------------
// Small device helpers.

template <MmaType T>
__device__ __forceinline__ float widen(std::uint16_t bits) {
#if defined(PSA_EMULATED)
  return twin::to_float(bits, T);
#else
  if constexpr (T == MmaType::BF16) {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  } else {
    return __half2float(__ushort_as_half(bits));
  }
#endif
}

// Sort key of a candidate: ascending keys give estimates descending, then J ascending (the
// reference's comparator). The high word is the complement of an order-preserving map of the
// float; -0 counts as +0, since the reference's `est[y] - est[x]` calls them equal.
__device__ __forceinline__ std::uint64_t rank_key(float e, int J) {
  return (static_cast<std::uint64_t>(~ordered_key(e)) << 32) | static_cast<std::uint32_t>(J);
}

__device__ __forceinline__ float key_estimate(std::uint64_t key) { return ordered_value(~static_cast<std::uint32_t>(key >> 32)); }

__device__ __forceinline__ int key_block(std::uint64_t key) { return static_cast<int>(static_cast<std::uint32_t>(key)); }

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// ---------------------------------------------------------------------------------------------
// pool: out[((b * heads + h) * numBlocks + blk) * headDim + d] over the valid rows of the block.
// Rows are summed in order in float32 (the reference sums in float64: estimates agree to float
// rounding, which the selection contract allows). Threads run over channels, so for each row the
// CTA reads contiguous elements.
template <MmaType T>
__global__ void __launch_bounds__(kPoolThreads)
    select_pool_kernel(const std::uint16_t* __restrict__ src, Strides strides, int seq,
                       int numBlocks, int heads, int headDim, int blockSize, float* __restrict__ mean, float* __restrict__ lo,
                       float* __restrict__ hi, float* __restrict__ var) {
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const long long n0 = static_cast<long long>(blk) * blockSize;
  const long long n1 = lmin(seq, n0 + blockSize);
  const std::uint16_t* base = src + offset_of(strides, b, h, 0);
  const std::size_t out = ((static_cast<std::size_t>(b) * heads + h) * numBlocks + blk) * headDim;
  const float count = static_cast<float>(n1 - n0);
  for (int d = threadIdx.x; d < headDim; d += kPoolThreads) {
    float sum = 0.0f, mn = INFINITY, mx = -INFINITY;
    for (long long n = n0; n < n1; n++) {
      const float v = widen<T>(base[n * strides.row + d]);
      sum += v;
      mn = fminf(mn, v);
      mx = fmaxf(mx, v);
    }
    const float mu = sum / count;
    mean[out + d] = mu;
    if (lo) {
      lo[out + d] = mn;
      hi[out + d] = mx;
    }
    if (var) {
      // Squared deviations from the mean, as the reference: no cancellation for keys far from 0.
      float dev = 0.0f;
      for (long long n = n0; n < n1; n++) {
        const float x = widen<T>(base[n * strides.row + d]) - mu;
        dev += x * x;
      }
      var[out + d] = dev / count;
    }
  }
}

// Where the rank kernel finds the pooled blocks and puts its choice.
struct RankArgs {
  const float* qMean = nullptr;  // [batch, heads, numQB, headDim]
  const float* kMean = nullptr;  // [batch, kvHeads, numKB, headDim]
  const float* kMin = nullptr;   // the same, bound estimate only
  const float* kMax = nullptr;
  const float* kVar = nullptr;   // the same, moment estimate only
  std::uint32_t* chosen = nullptr;  // [rows, words] bitmask of chosen J
  int words = 0, numQB = 0, numKB = 0, group = 1;
  int capacity = 0;  // power of two >= numKB: entries of the shared sort
};

// keepCount's final clamp, in float64 like the reference's Math.min / Math.max.
__device__ __forceinline__ int clamp_keep(double n, int c, const SelectParams& p) {
  const double k = fmin(static_cast<double>(c), fmax(static_cast<double>(p.minBlocks), fmin(static_cast<double>(p.maxBlocks), n)));
  return static_cast<int>(k);
}

// Dynamic shared memory: capacity sort keys (8 bytes), then for progressive capacity float64
// weights. Small fixed arrays are static shared.
template <BlockEstimate E>
__global__ void __launch_bounds__(kRankThreads) select_rank_kernel(const SelectParams p, const RankArgs a) {
  PSA_DYNAMIC_SHARED(std::uint64_t, keys);
  double* weights = reinterpret_cast<double*>(keys + a.capacity);
  __shared__ int warpCount[kRankWarps];
  __shared__ int belowGoal;
  __shared__ double goal;
  __shared__ std::uint32_t mask[kMaskWords];

  const int I = blockIdx.x, hg = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const MaskGeometry m = mask_of(p.shape, p.mask);
  const long long bs = p.blockSize;
  const long long i0 = I * bs, i1 = lmin(p.shape.seqQ, i0 + bs) - 1;
  const int nKB = a.numKB, D = p.shape.headDim;

  // 1. Candidates in ascending J (order-preserving compaction: ballot within a warp, warp
  //    counts across the CTA), low words of `keys`.
  int c = 0;
  for (int base = 0; base < nKB; base += kRankThreads) {
    const int J = base + tid;
    bool flag = false;
    if (J < nKB) {
      const long long j0 = J * bs;
      flag = is_candidate(m, i0, i1, j0, lmin(p.shape.seqK, j0 + bs) - 1);
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0) warpCount[warp] = popc(ballot);
    __syncthreads();
    int before = c;
    for (int w = 0; w < warp; w++) before += warpCount[w];
    if (flag) keys[before + popc(ballot & ((1u << lane) - 1u))] = static_cast<std::uint64_t>(J);
    for (int w = 0; w < kRankWarps; w++) c += warpCount[w];
    __syncthreads();
  }

  // 2. Estimates, one warp per candidate. Shared across the group: sum of the group's
  //    estimates in head order, divided by the group size (the reference's reduce order).
  const bool share = p.shareAcrossGroup;
  const int nh = share ? a.group : 1;
  const int head0 = share ? hg * a.group : hg;
  const int kvh = share ? hg : hg / a.group;
  const std::size_t kBase = (static_cast<std::size_t>(b) * p.shape.kvHeads + kvh) * nKB;
  for (int r = warp; r < c; r += kRankWarps) {
    const int J = key_block(keys[r]);
    const std::size_t ko = (kBase + J) * D;
    float sum = 0.0f;
    for (int g = 0; g < nh; g++) {
      const float* qv = a.qMean + ((static_cast<std::size_t>(b) * p.shape.heads + head0 + g) * a.numQB + I) * D;
      float dot = 0.0f, spread = 0.0f;
      for (int d = lane; d < D; d += 32) {
        if constexpr (E == BlockEstimate::Bound) {
          const float x = qv[d];
          dot += fmaxf(x * a.kMin[ko + d], x * a.kMax[ko + d]);
        } else {
          dot += qv[d] * a.kMean[ko + d];
          if constexpr (E == BlockEstimate::Moment) spread += qv[d] * qv[d] * a.kVar[ko + d];
        }
      }
      sum += p.scale * warp_sum(dot);
      if constexpr (E == BlockEstimate::Moment) sum += (p.scale * p.scale * 0.5f) * warp_sum(spread);
    }
    const float e = share ? sum / static_cast<float>(nh) : sum;
    if (lane == 0) keys[r] = rank_key(e, J);
  }
  __syncthreads();

  // 3. How many to keep. Ratio and count do not depend on the order: sort only when a strict
  //    prefix is kept. Progressive needs the order and the running sum of the weights.
  int n = 0;
  const bool progressive = p.mode == SelectMode::Progressive;
  if (!progressive) {
    const double raw = p.mode == SelectMode::Ratio ? ceil_tolerant(p.value * c) : p.value;
    n = clamp_keep(raw, c, p);
  }
  if ((progressive && c > 1) || (!progressive && n > 0 && n < c)) {
    int n2 = 1;
    while (n2 < c) n2 <<= 1;
    for (int r = c + tid; r < n2; r += kRankThreads) keys[r] = ~0ull;
    __syncthreads();
    for (int k = 2; k <= n2; k <<= 1) {
      for (int j = k >> 1; j > 0; j >>= 1) {
        for (int i = tid; i < n2; i += kRankThreads) {
          const int ixj = i ^ j;
          if (ixj > i) {
            const std::uint64_t x = keys[i], y = keys[ixj];
            if ((x > y) == ((i & k) == 0)) {
              keys[i] = y;
              keys[ixj] = x;
            }
          }
        }
        __syncthreads();
      }
    }
  }
  if (progressive) {
    // w_r = n_J * exp(e_r - top) in ranked order, then the reference's loop
    // `while (n < c && acc < goal) acc += w[n++]`: its acc after n terms is the running sum P_{n-1}
    // (the same additions in the same order as the total), so n = 1 + #{r : P_r < goal} (at most
    // c), or 0 when goal <= 0. One thread makes the running sum: float64 addition is not
    // associative, and this keeps every rounding of the reference.
    if (c > 0) {
      const double top = key_estimate(keys[0]);
      for (int r = tid; r < c; r += kRankThreads) {
        const int J = key_block(keys[r]);
        const long long j0 = J * bs;
        const double count = static_cast<double>(lmin(p.shape.seqK, j0 + bs) - j0);
        weights[r] = count * exp(static_cast<double>(key_estimate(keys[r])) - top);
      }
    }
    __syncthreads();
    if (tid == 0) {
      double acc = 0.0;
      for (int r = 0; r < c; r++) {
        acc += weights[r];
        weights[r] = acc;
      }
      goal = p.value * acc;
      belowGoal = 0;
    }
    __syncthreads();
    const double g = goal;
    int mine = 0;
    for (int r = tid; r < c; r += kRankThreads) mine += weights[r] < g ? 1 : 0;
    if (mine) atomicAdd(&belowGoal, mine);
    __syncthreads();
    const int raw = 0.0 < g ? (belowGoal + 1 < c ? belowGoal + 1 : c) : 0;
    n = clamp_keep(static_cast<double>(raw), c, p);
  }

  // 4. The first n keys are the choice: a bitmask row per query head. Bits are distinct, so the
  //    shared atomicAdd is an OR.
  for (int w = tid; w < a.words; w += kRankThreads) mask[w] = 0u;
  __syncthreads();
  for (int r = tid; r < n; r += kRankThreads) {
    const int J = key_block(keys[r]);
    atomicAdd(&mask[J >> 5], 1u << (J & 31));
  }
  __syncthreads();
  for (int g = 0; g < nh; g++) {
    const std::size_t row = (static_cast<std::size_t>(b) * p.shape.heads + head0 + g) * a.numQB + I;
    for (int w = tid; w < a.words; w += kRankThreads) a.chosen[row * a.words + w] = mask[w];
  }
}

// rows: BlockLayout.fromSelection for one row per warp. An entry is a chosen J with causal
// coverage, or an unchosen J with window/sink coverage; flags SELECTED and FULL. Count: writes
// the row's entry count to counts[r + 1]. Fill: writes entries from starts[r] on.
template <bool Fill>
__global__ void __launch_bounds__(kRowThreads)
    select_rows_kernel(const SelectParams p, const std::uint32_t* __restrict__ chosen, int words, long long rows, int numQB, int numKB,
                       std::int32_t* __restrict__ counts, const std::int32_t* __restrict__ starts, std::int32_t* __restrict__ indices,
                       std::uint8_t* __restrict__ flags) {
  const int lane = threadIdx.x & 31;
  const long long r = static_cast<long long>(blockIdx.x) * kRowWarps + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves: r is the same for its lanes
  const MaskGeometry m = mask_of(p.shape, p.mask);
  const long long bs = p.blockSize;
  const long long I = r % numQB;
  const long long i0 = I * bs, i1 = lmin(p.shape.seqQ, i0 + bs) - 1;
  // Past the last row's causal limit no tile has an allowed key (window and sinks included).
  long long jEnd = numKB;
  if (p.mask.causal) {
    const long long last = causal_limit(m, i1);
    jEnd = last < 0 ? 0 : lmin(numKB, last / bs + 1);
  }
  const std::uint32_t* mrow = chosen ? chosen + r * words : nullptr;
  const long long start = Fill ? starts[r] : 0;
  int written = 0;
  for (long long J0 = 0; J0 < jEnd; J0 += 32) {
    const long long J = J0 + lane;
    bool take = false;
    std::uint8_t f = 0;
    if (J < jEnd) {
      const bool sel = mrow && ((mrow[J >> 5] >> (J & 31)) & 1u);
      const long long j0 = J * bs, j1 = lmin(p.shape.seqK, j0 + bs) - 1;
      const int cov = sel ? causal_coverage(m, i0, i1, j0, j1) : window_sink_coverage(m, i0, i1, j0, j1);
      take = cov != kCoverNone;
      f = static_cast<std::uint8_t>((sel ? kBlockSelected : 0) | (cov == kCoverFull ? kBlockFull : 0));
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, take);
    if constexpr (Fill) {
      if (take) {
        const long long pos = start + written + popc(ballot & ((1u << lane) - 1u));
        indices[pos] = static_cast<std::int32_t>(J);
        flags[pos] = f;
      }
    }
    written += popc(ballot);
  }
  if constexpr (!Fill) {
    if (lane == 0) counts[r + 1] = written;
  }
}

// scan: offsets[1..rows] hold the counts; make them the inclusive sums and offsets[0] = 0. One
// CTA: each thread takes a contiguous run of rows (rows are at most a few hundred thousand, one
// pass of reads and writes), then a block scan of the per-thread sums.
template <int Threads>
__global__ void __launch_bounds__(Threads) select_scan_kernel(std::int32_t* __restrict__ offsets, long long rows) {
  __shared__ int warpTotal[Threads / 32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const long long per = (rows + Threads - 1) / Threads;
  const long long lo = lmin(rows, tid * per), hi = lmin(rows, lo + per);
  int sum = 0;
  for (long long k = lo; k < hi; k++) sum += offsets[k + 1];
  int incl = sum;
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) warpTotal[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int t = lane < Threads / 32 ? warpTotal[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += v;
    }
    if (lane < Threads / 32) warpTotal[lane] = t;
  }
  __syncthreads();
  int run = incl - sum + (warp > 0 ? warpTotal[warp - 1] : 0);
  for (long long k = lo; k < hi; k++) {
    run += offsets[k + 1];
    offsets[k + 1] = run;
  }
  if (tid == 0) offsets[0] = 0;
}

}  // namespace blocksel
}  // namespace psa::gpu
