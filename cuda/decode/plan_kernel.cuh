// The page plan of a decode step, one CTA per selection unit: a query row (b, h, i), or with
// shareAcrossGroup the rows of a kv group (b, kv head, i). It writes each row's page flags
// (whole page, or window and sinks only), its visited-page count and its estimated dropped
// share R / (Z + R), exactly as the reference (lib/reference/decode.ts) decides them:
//
//   candidates  pages with a causal key outside the window and the sinks (n_J such keys);
//   estimates   from the page metadata only ('mean', 'bound', 'moment'), float32, by
//               page_estimates_kernel for every row before the plan;
//   order       by estimate, ties to the lower page (bitonic sort in shared memory), for a
//               shared unit by the mean of the group's estimates;
//   count       ratio / topBlocks directly; progressive: the shortest prefix with
//               Z >= tau (Z + R), Z the exact mass of the window, sinks and prefix pages, R the
//               suffix of n_J exp(e_J). The estimates predict the stop first (the rule with the
//               prefix's estimated masses in Z); the warps score the ordered pages up to it and
//               a margin in one round, then kPlanWalkRound, doubled, more a round while the rule
//               is not met; each round tests the rule at every scored position with the exact Z
//               there (a prefix scan of the exact masses), the least position wins, so the
//               prefix is exact: pages scored past the stop are extra work, never a different
//               answer. Every loop over the candidates runs across the CTA (the compaction,
//               the suffix masses, the prediction, the walk): no thread walks them alone. Then
//               clamped; shared: the longest of the heads' counts, so every head keeps its own
//               guarantee.
#pragma once

#include <cstdint>

#include "../attention/bits.cuh"
#include "../attention/ceil_tolerant.cuh"
#include "../cuda_compat.h"
#include "params.h"
#include "row_rule.cuh"
#include "traits.h"

namespace psa::gpu::decode {

// Heads one shared unit may hold (a kv group): the walk keeps each one's progress here.
constexpr int kMaxGroup = 256;

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// A lane's running log-sum-exp over the scores it adds: the largest score and the sum of
// exp(score - largest), rescaled when a larger one arrives.
struct RunningMass {
  float mx = -INFINITY, sum = 0.0f;
  __device__ __forceinline__ void add(float s) {
    if (s > mx) {
      sum = sum * expf(mx - s) + 1.0f;
      mx = s;
    } else {
      sum += expf(s - mx);
    }
  }
  // Over the warp (every lane calls it): the warp's largest score m, and the sum relative to m.
  __device__ __forceinline__ void warp_total(float& m, float& total) const {
    m = warp_max(mx);
    total = warp_sum(mx == -INFINITY ? 0.0f : sum * expf(mx - m));
  }
};

// A sum of exponentials as its largest exponent m and the sum s of exp(x - m): combining two is
// associative, so the suffix sums of the ordered pages' weights take a parallel scan.
struct LogSum {
  float m = -INFINITY, s = 0.0f;
};
__device__ __forceinline__ LogSum log_sum_combine(LogSum a, LogSum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  const float m = fmaxf(a.m, b.m);
  return LogSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// The CTA's scan of x[0, n) as sums of exponentials (every thread calls it): this thread's
// contiguous chunk [lo, hi) and what the chunks before it sum to (Suffix: the chunks after it),
// and with `total` the sum of all. The lanes' chunk sums are scanned by shuffles, the warps'
// through shared memory: depth log(threads) + n / threads, where one thread's loop had depth n.
// A barrier must separate two calls' reads of the warps' totals and the next call's writes.
template <bool Suffix>
__device__ __forceinline__ LogSum scan_chunks(const float* x, int n, int& lo, int& hi, LogSum* total) {
  __shared__ LogSum warpTotal[kPlanWarps];
  const int per = (n + kPlanThreads - 1) / kPlanThreads;
  lo = min_of(static_cast<int>(threadIdx.x) * per, n);
  hi = min_of(lo + per, n);
  LogSum mine;
  for (int r = lo; r < hi; r++) mine = log_sum_combine(mine, LogSum{ld(x + r), 1.0f});
  // Inclusive over the lanes: lane l holds lanes l..31 (Suffix) or 0..l.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  LogSum incl = mine;
  for (int o = 1; o < 32; o <<= 1) {
    const float m = Suffix ? __shfl_down_sync(0xffffffffu, incl.m, o) : __shfl_up_sync(0xffffffffu, incl.m, o);
    const float s = Suffix ? __shfl_down_sync(0xffffffffu, incl.s, o) : __shfl_up_sync(0xffffffffu, incl.s, o);
    if (Suffix ? lane + o < 32 : lane >= o) incl = log_sum_combine(incl, LogSum{m, s});
  }
  if (lane == (Suffix ? 0 : 31)) warpTotal[warp] = incl;
  const float nm = Suffix ? __shfl_down_sync(0xffffffffu, incl.m, 1) : __shfl_up_sync(0xffffffffu, incl.m, 1);
  const float ns = Suffix ? __shfl_down_sync(0xffffffffu, incl.s, 1) : __shfl_up_sync(0xffffffffu, incl.s, 1);
  __syncthreads();
  LogSum before;
  for (int w = 0; w < kPlanWarps; w++) {
    if (Suffix ? w > warp : w < warp) before = log_sum_combine(before, warpTotal[w]);
  }
  if (Suffix ? lane < 31 : lane > 0) before = log_sum_combine(before, LogSum{nm, ns});
  if (total) {
    LogSum all;
    for (int w = 0; w < kPlanWarps; w++) all = log_sum_combine(all, warpTotal[w]);
    *total = all;
  }
  return before;
}

__device__ __forceinline__ float log_of(LogSum x) { return x.m == -INFINITY ? -INFINITY : x.m + logf(x.s); }

// In place: x[r] <- ln sum_{k >= r} exp(x[k]) for r < n, and x[n] = -inf (every thread calls it).
__device__ __forceinline__ void suffix_log_sums(float* x, int n) {
  int lo, hi;
  LogSum after = scan_chunks<true>(x, n, lo, hi, nullptr);
  for (int r = hi - 1; r >= lo; r--) {
    after = log_sum_combine(LogSum{x[r], 1.0f}, after);
    x[r] = log_of(after);
  }
  if (threadIdx.x == 0) x[n] = -INFINITY;
  __syncthreads();
}

// Where the plan of one unit keeps its state: the shared-memory arrays and the unit's rows.
struct PlanUnit {
  int b, firstHead, heads, hk, i, length;
  RowSpan span;
  int rowPages, candidates;
  float* key;          // [pow2]: sort keys, best first after the sort
  int* idx;            // [pow2]: candidate index of each sorted position
  float* suffix;       // [candidates + 1]: ln R after keeping the first r (current head)
  int* candPage;       // [candidates]: page index within the sequence, ascending
  int* candKeys;       // [candidates]: n_J (negated once chosen)
  std::size_t unitIndex;
};

template <typename T>
__device__ __forceinline__ const std::uint16_t* key_at(const StepParams& p, const PlanUnit& u, int j) {
  const int ps = p.pool.pageSize;
  const int page = ld(p.pageTable + static_cast<std::size_t>(u.b) * p.tableStride + j / ps);
  return p.pool.keys + pool_offset(p.pool, page, u.hk, j % ps);
}

// Exact log mass of candidate c's candidate keys for the query q, by one warp.
template <typename T>
__device__ __forceinline__ float page_log_mass(const StepParams& p, const PlanUnit& u, const float* q, int c) {
  const int ps = p.pool.pageSize;
  const int lo = u.candPage[c] * ps;
  const int hi = min_of(u.span.pos, lo + ps - 1);
  const int lane = threadIdx.x & 31;
  RunningMass mass;
  for (int j = lo + lane; j <= hi; j += 32) {
    if (!in_window_or_sinks(u.span, j)) mass.add(key_score<T>(q, key_at<T>(p, u, j), p.pool.headDim, p.scale));
  }
  float m, total;
  mass.warp_total(m, total);
  return m == -INFINITY ? -INFINITY : m + logf(total);
}

// Exact log mass of the window and the sinks for q, by the whole CTA (every thread calls it).
template <typename T>
__device__ __forceinline__ float base_log_mass(const StepParams& p, const PlanUnit& u, const float* q) {
  __shared__ float warpM[kPlanWarps], warpS[kPlanWarps];
  const RowSpan& r = u.span;
  const int sinkCount = r.sinkHi + 1;
  const int wFrom = max_of(r.wLo, r.sinkHi + 1);
  const int total = sinkCount + span_of(wFrom, r.wHi);
  RunningMass mass;
  for (int t = threadIdx.x; t < total; t += blockDim.x) {
    const int j = t < sinkCount ? t : wFrom + (t - sinkCount);
    mass.add(key_score<T>(q, key_at<T>(p, u, j), p.pool.headDim, p.scale));
  }
  float m, s;
  mass.warp_total(m, s);
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    warpM[warp] = m;
    warpS[warp] = s;
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kPlanWarps; w++) M = fmaxf(M, warpM[w]);
  float S = 0.0f;
  for (int w = 0; w < kPlanWarps; w++) S += warpM[w] == -INFINITY ? 0.0f : warpS[w] * expf(warpM[w] - M);
  __syncthreads();
  return M == -INFINITY ? -INFINITY : M + logf(S);
}

// The least power of two >= n (n >= 1): the length the bitonic sort runs over.
__device__ __forceinline__ int pow2_ceil(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

__device__ __forceinline__ bool sorted_before(const float* key, const int* idx, int a, int b) {
  return key[a] > key[b] || (key[a] == key[b] && idx[a] < idx[b]);
}

// Bitonic sort of n (a power of two) entries, best first.
__device__ __forceinline__ void sort_best_first(float* key, int* idx, int n) {
  for (int k = 2; k <= n; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < n; t += blockDim.x) {
        const int x = t ^ j;
        if (x <= t) continue;
        const bool ascending = (t & k) == 0;
        if (ascending ? sorted_before(key, idx, x, t) : sorted_before(key, idx, t, x)) {
          const float kk = key[t];
          key[t] = key[x];
          key[x] = kk;
          const int ii = idx[t];
          idx[t] = idx[x];
          idx[x] = ii;
        }
      }
      __syncthreads();
    }
  }
}

template <typename T>
__device__ __forceinline__ void load_query(const StepParams& p, const PlanUnit& u, int head, float* q) {
  const std::uint16_t* src = p.q + ((static_cast<std::size_t>(u.b) * p.heads + head) * p.m + u.i) * p.pool.headDim;
  __syncthreads();
  for (int d = threadIdx.x; d < p.pool.headDim; d += blockDim.x) q[d] = widen16<T>(ld(src + d));
  __syncthreads();
}

// Head g's estimate of candidate c (page_estimates_kernel wrote every row's).
__device__ __forceinline__ float estimate_of(const StepParams& p, const PlanUnit& u, int g, int c) {
  const std::size_t row = (static_cast<std::size_t>(u.b) * p.heads + u.firstHead + g) * p.m + u.i;
  return ld(p.estimates + row * p.maxPages + u.candPage[c]);
}

// ln R after the first r ordered candidates, for head g. A unit of one head sorted by its own
// estimates: the sort keys are they (0 + e), not read again.
__device__ __forceinline__ void suffix_masses(const StepParams& p, const PlanUnit& u, int g) {
  const int nc = u.candidates;
  for (int r = threadIdx.x; r < nc; r += blockDim.x) {
    const int c = u.idx[r];
    const int n = u.candKeys[c] < 0 ? -u.candKeys[c] : u.candKeys[c];
    u.suffix[r] = logf(static_cast<float>(n)) + (u.heads == 1 ? u.key[r] : estimate_of(p, u, g, c));
  }
  __syncthreads();
  suffix_log_sums(u.suffix, nc);
}

// Where the rule would stop were the ordered pages' exact masses their estimates: the first r
// with ln(1 - tau) + ln(Z_base + T - R_r) >= ln tau + ln R_r, T the estimated mass of every
// candidate (suffix[0]). Monotone in r, so each thread tests its own r in order and the least
// wins. Every thread calls it, after a barrier that follows their reads of the previous call's
// result (suffix_masses ends with one).
__device__ __forceinline__ int predicted_stop(const PlanUnit& u, float base, float a, float t) {
  __shared__ int least;
  if (threadIdx.x == 0) least = u.candidates;
  __syncthreads();
  const float total = u.suffix[0];
  for (int r = threadIdx.x; r < u.candidates; r += blockDim.x) {
    if (a + log_add_exp(base, log_sub_exp(total, u.suffix[r])) >= t + u.suffix[r]) {
      atomicMin(&least, r);
      break;
    }
  }
  __syncthreads();
  return least;
}

// One round of the exact walk over the scored positions [from, to), by the CTA (every thread
// calls it): Z before position r is z0 (the walk so far) plus the exact masses of [from, r), by
// a prefix scan; the rule is tested at every r in [from, to] and the least r where it holds
// wins. Returns whether it held; `at` and `zAt` are that r and its ln Z, else `to` and ln Z
// after every scored page.
__device__ __forceinline__ bool walk_round(const PlanUnit& u, const float* masses, int from, int to, float z0, float a, float t, int& at, float& zAt) {
  constexpr int kNone = 0x7fffffff;
  __shared__ int least;
  __shared__ float zLeast;
  if (threadIdx.x == 0) least = kNone;
  int lo, hi;
  LogSum total;
  LogSum z = log_sum_combine(LogSum{z0, 1.0f}, scan_chunks<false>(masses + from, to - from, lo, hi, &total));
  int mine = kNone;
  float zMine = 0.0f;
  for (int k = lo; k < hi; k++) {
    const float lz = log_of(z);
    if (a + lz >= t + u.suffix[from + k]) {
      mine = k;
      zMine = lz;
      break;
    }
    z = log_sum_combine(z, LogSum{ld(masses + from + k), 1.0f});
  }
  if (mine != kNone) atomicMin(&least, mine);
  __syncthreads();
  if (mine != kNone && mine == least) zLeast = zMine;
  __syncthreads();
  if (least != kNone) {
    at = from + least;
    zAt = zLeast;
    return true;
  }
  at = to;
  zAt = log_of(log_sum_combine(LogSum{z0, 1.0f}, total));
  return a + zAt >= t + u.suffix[to];
}

// The masses of ordered positions [from, to) for head g, by the warps, into the workspace.
template <typename T>
__device__ __forceinline__ void score_positions(const StepParams& p, const PlanUnit& u, const float* q, int g, int from, int to) {
  float* masses = p.masses + (u.unitIndex * u.heads + g) * static_cast<std::size_t>(p.maxPages);
  for (int r = from + (threadIdx.x >> 5); r < to; r += kPlanWarps) {
    const float lm = page_log_mass<T>(p, u, q, u.idx[r]);
    st_if((threadIdx.x & 31) == 0, masses + r, lm);
  }
  __syncthreads();
}

// At most 128 registers a thread (512 threads, one CTA per SM at least).
template <typename T>
__global__ void __launch_bounds__(kPlanThreads, 1) plan_kernel(StepParams p) {
  PSA_DYNAMIC_SHARED(unsigned char, smem);
  __shared__ float q[256];
  __shared__ int walked[kMaxGroup];
  __shared__ float walkedZ[kMaxGroup];
  __shared__ float baseZ[kMaxGroup];
  __shared__ int countOf[kMaxGroup];
  __shared__ int scoredOf[kMaxGroup];  // ordered positions [0, scoredOf[g]) have head g's masses
  __shared__ int visitedCount;
  __shared__ int warpCount[kPlanWarps];

  const int G = p.group();
  PlanUnit u;
  u.heads = p.shareAcrossGroup ? G : 1;
  const int unitsPerBatch = p.heads / u.heads;
  u.unitIndex = blockIdx.x;
  u.i = static_cast<int>(blockIdx.x % p.m);
  const int hu = static_cast<int>((blockIdx.x / p.m) % unitsPerBatch);
  u.b = static_cast<int>(blockIdx.x / (static_cast<std::size_t>(p.m) * unitsPerBatch));
  u.firstHead = hu * u.heads;
  u.hk = u.firstHead / G;
  u.length = p.lengths[u.b];
  u.span = row_span(p, u.length, u.i);
  const int ps = p.pool.pageSize;
  u.rowPages = u.span.pos / ps + 1;
  const int N = p.maxPages;
  const int pow2 = pow2_ceil(N);
  u.key = reinterpret_cast<float*>(smem);
  u.idx = reinterpret_cast<int*>(u.key + pow2);
  u.suffix = reinterpret_cast<float*>(u.idx + pow2);
  u.candPage = reinterpret_cast<int*>(u.suffix + N + 1);
  u.candKeys = u.candPage + N;
  const bool selecting = p.choice != Choice::None;

  // Candidates in page order: pages holding a key outside the window and the sinks, compacted
  // a CTA-wide chunk of pages at a time by the warps' ballots.
  int candidates = 0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int J0 = 0; selecting && J0 < u.rowPages; J0 += kPlanThreads) {
    const int J = J0 + static_cast<int>(threadIdx.x);
    int n = 0;
    if (J < u.rowPages) {
      const int lo = J * ps;
      const int hi = min_of(u.span.pos, lo + ps - 1);
      n = span_of(lo, hi) - window_sink_count(u.span, lo, hi);
    }
    const unsigned is = __ballot_sync(0xffffffffu, n > 0);
    if (lane == 0) warpCount[warp] = popc(is);
    __syncthreads();
    int at = candidates + popc(is & ((1u << lane) - 1u));
    for (int w = 0; w < kPlanWarps; w++) {
      if (w < warp) at += warpCount[w];
      candidates += warpCount[w];
    }
    if (n > 0) {
      u.candPage[at] = J;
      u.candKeys[at] = n;
    }
    __syncthreads();
  }
  u.candidates = candidates;
  const int nc = u.candidates;
  const int sortN = pow2_ceil(nc);

  if (selecting) {
    // Sort keys: the estimate (shared: the mean of the group's).
    for (int t = threadIdx.x; t < sortN; t += blockDim.x) {
      u.key[t] = t < nc ? 0.0f : -INFINITY;
      u.idx[t] = t < nc ? t : 0x7fffffff;
    }
    for (int g = 0; g < u.heads; g++) {
      for (int c = threadIdx.x; c < nc; c += blockDim.x) u.key[c] += estimate_of(p, u, g, c);
    }
    __syncthreads();
    if (u.heads > 1) {
      for (int c = threadIdx.x; c < nc; c += blockDim.x) u.key[c] /= static_cast<float>(u.heads);
    }
    __syncthreads();
    sort_best_first(u.key, u.idx, sortN);

    const double maxCount = p.maxBlocks < nc ? p.maxBlocks : nc;
    auto clampCount = [&](double n) { return static_cast<int>(fmin(fmax(n, static_cast<double>(p.minBlocks)), maxCount)); };
    const float a = logf(1.0f - static_cast<float>(p.choiceValue));
    const float t = logf(static_cast<float>(p.choiceValue));
    // Pass 1: each head's count (progressive walks its own rule).
    for (int g = 0; g < u.heads; g++) {
      load_query<T>(p, u, u.firstHead + g, q);
      const float base = base_log_mass<T>(p, u, q);
      if (threadIdx.x == 0) baseZ[g] = base;
      int count = 0;
      int scored = 0;
      float lZ = base;
      if (p.choice == Choice::Ratio) {
        count = clampCount(ceil_tolerant(p.choiceValue * nc));
      } else if (p.choice == Choice::TopBlocks) {
        count = clampCount(p.choiceValue);
      } else {
        suffix_masses(p, u, g);
        const float* masses = p.masses + (u.unitIndex * u.heads + g) * static_cast<std::size_t>(N);
        int r = 0;
        int round = kPlanWalkRound;  // doubled each round: a walk the estimates misjudge ends in O(log) rounds
        scored = min_of(min_of(predicted_stop(u, base, a, t) + kPlanWalkMargin, kPlanFirstRound), nc);
        // At r = nc the rule holds (R = 0): the loop ends.
        while (true) {
          score_positions<T>(p, u, q, g, r, scored);
          if (walk_round(u, masses, r, scored, lZ, a, t, r, lZ)) break;
          scored = min_of(r + round, nc);
          round *= 2;
        }
        if (threadIdx.x == 0) {
          walked[g] = r;
          walkedZ[g] = lZ;
        }
        count = clampCount(r);
      }
      if (threadIdx.x == 0) {
        countOf[g] = count;
        scoredOf[g] = scored;
      }
      if (p.choice != Choice::Progressive && threadIdx.x == 0) {
        walked[g] = 0;
        walkedZ[g] = base;
      }
      __syncthreads();
    }
    // The count every head of the unit keeps, and the chosen pages.
    int kept = 0;
    for (int g = 0; g < u.heads; g++) kept = max_of(kept, countOf[g]);
    for (int r = threadIdx.x; r < kept; r += blockDim.x) u.candKeys[u.idx[r]] = -u.candKeys[u.idx[r]];
    __syncthreads();
    // Pass 2: each head's R / (Z + R) for the kept prefix.
    for (int g = 0; g < u.heads; g++) {
      load_query<T>(p, u, u.firstHead + g, q);
      // One head's walk left its suffix masses in place.
      if (u.heads > 1 || p.choice != Choice::Progressive) suffix_masses(p, u, g);
      // From the walked prefix when the count reaches past it, else from the window and sinks;
      // the pages the walk scored already have their masses.
      const int from = walked[g] <= kept ? walked[g] : 0;
      score_positions<T>(p, u, q, g, max_of(from, scoredOf[g]), kept);
      const float* masses = p.masses + (u.unitIndex * u.heads + g) * static_cast<std::size_t>(N);
      int lo, hi;
      LogSum added;
      scan_chunks<false>(masses + from, kept - from, lo, hi, &added);
      if (threadIdx.x == 0) {
        const float lZ = log_of(log_sum_combine(LogSum{walked[g] <= kept ? walkedZ[g] : baseZ[g], 1.0f}, added));
        const float lR = u.suffix[kept];
        const long long row = (static_cast<long long>(u.b) * p.heads + u.firstHead + g) * p.m + u.i;
        p.dropped[row] = lR == -INFINITY ? 0.0f : 1.0f / (1.0f + expf(lZ - lR));
      }
      __syncthreads();
    }
  } else {
    for (int g = threadIdx.x; g < u.heads; g += blockDim.x) p.dropped[(static_cast<long long>(u.b) * p.heads + u.firstHead + g) * p.m + u.i] = 0.0f;
  }

  // Page flags of every row of the unit: whole pages, window and sinks, then the visited count.
  if (threadIdx.x == 0) visitedCount = 0;
  __syncthreads();
  const std::size_t firstRow = (static_cast<std::size_t>(u.b) * p.heads + u.firstHead) * p.m + u.i;
  for (int J = threadIdx.x; J < N; J += blockDim.x) {
    std::uint8_t f = 0;
    if (J < u.rowPages) {
      const int lo = J * ps;
      const int hi = min_of(u.span.pos, lo + ps - 1);
      if (!p.sparse) f |= kPageWhole;
      if (window_sink_count(u.span, lo, hi) > 0) f |= kPageWindowOrSink;
    }
    for (int g = 0; g < u.heads; g++) p.pageFlags[(firstRow + static_cast<std::size_t>(g) * p.m) * N + J] = f;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < nc; c += blockDim.x) {
    if (u.candKeys[c] >= 0) continue;
    for (int g = 0; g < u.heads; g++) p.pageFlags[(firstRow + static_cast<std::size_t>(g) * p.m) * N + u.candPage[c]] |= kPageWhole;
  }
  __syncthreads();
  int mine = 0;
  for (int J = threadIdx.x; J < u.rowPages; J += blockDim.x) mine += p.pageFlags[firstRow * N + J] != 0;
  if (mine) atomicAdd(&visitedCount, mine);
  __syncthreads();
  for (int g = threadIdx.x; g < u.heads; g += blockDim.x) p.visited[firstRow + static_cast<std::size_t>(g) * p.m] = visitedCount;
}

}  // namespace psa::gpu::decode
