// The per-row top-k threshold kernel: tau_i = the k_i-th largest score s_ij over the allowed keys
// A_i (ties counted: the k-th element of the multiset sorted descending), -inf when
// |A_i| <= k_i (docs/contract.md#top-k-thresholds). Only the thresholds are written; no score
// is ever stored.
//
// One CTA per (64-row query tile, query head h, batch b), 4 warps of 16 rows each, like the
// forward kernel. Radix select on order-preserving 32-bit keys of the float scores (bits.cuh),
// 8-bit digits, most significant first, 4 passes. Each pass walks the forward kernel's key tiles
// (key_tiles.cuh) and recomputes the scores with its scores function (scores.cuh), so that tau
// is one of the very floats the forward compares against:
//   Q tile   global -> shared (cp.async) -> A fragments in registers (ldmatrix.x4), once; its
//            shared tile is the histogram region, zeroed after;
//   K        global -> shared (cp.async), kBlockN keys a step (32 at d 256), double-buffered
//            for d 64/128, single for d 256;
//   mask     the forward's element rule (element_mask.cuh) on the tiles it applies it to;
//   count    keys whose higher digits equal the row's chosen prefix add 1 to the per-row 256-bin
//            histogram of the current digit (32-bit shared atomics): one add per distinct bin
//            of the 4 lanes that hold a row's keys, bins XOR-swizzled so that the 8 rows of a
//            warp instruction fall on different banks: the concentrated first digit (every
//            key of every row in one bin) costs one conflict-free add per row, not 32 serialised;
//   choose   each warp scans its 16 rows' histograms from the top digit down (warp prefix sum,
//            ballot) and narrows the prefix and the rank still wanted. Pass 0's histogram total
//            is |A_i|, which fixes k_i (ratio mode) and the -inf rows.
// A CTA whose rows are all -inf after pass 0 (every row's rank state 0) stops there.
// Tile shapes: topk_traits.h. Parameters: params.h.
#pragma once

#include <cmath>
#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "bits.cuh"
#include "ceil_tolerant.cuh"
#include "element_mask.cuh"
#include "key_tiles.cuh"
#include "params.h"
#include "scores.cuh"
#include "tile_load.cuh"
#include "topk_traits.h"

namespace psa::gpu {

// How k_i is chosen: topK > 0 fixes it; else k_i = max(1, ceil_tolerant(ratio * |A_i|)).
// thresholds: [batch, heads, seqQ] float32.
struct TopkArgs {
  int topK = 0;
  double ratio = 0.0;
  float* thresholds = nullptr;
};

namespace topk {

// k_i for a row with n allowed keys, or -1 when |A_i| <= k_i (tau = -inf; empty rows too).
__device__ __forceinline__ long long row_k_or_none(const TopkArgs& a, std::uint32_t n) {
  long long k = a.topK;
  if (k <= 0) {
    const double c = ceil_tolerant(a.ratio * static_cast<double>(n));
    k = c < 1.0 ? 1 : static_cast<long long>(c);
  }
  return static_cast<long long>(n) <= k ? -1 : k;
}

// Word of bin `bin` in row `row`'s histogram: bits 2-4 of the bin XORed with the row's low 3
// bits, so that the 8 rows one warp instruction counts (g = 0..7) put a shared bin on 8
// different banks; aligned groups of 4 bins stay together (uint4 reads of the choose step).
__device__ __forceinline__ int swizzled_bin(int row, std::uint32_t bin) { return row * 256 + static_cast<int>(bin ^ (static_cast<std::uint32_t>(row & 7) << 2)); }

// The 4 lanes of a fragment row (lanes 4g..4g+3) each hold one key of the row: one atomic add
// per distinct bin of the quad, by its lowest lane, of how many of the quad have it.
// kNoBin: the lane counts nothing.
constexpr std::uint32_t kNoBin = 0xffffffffu;
struct QuadCount {
  bool leader;
  std::uint32_t count;
};

__device__ __forceinline__ QuadCount quad_count(std::uint32_t bin, int lane) {
  QuadCount q{bin != kNoBin, 1u};
#pragma unroll
  for (int d = 1; d < 4; ++d) {
    const std::uint32_t other = __shfl_xor_sync(0xffffffffu, bin, d);
    if (other == bin) {
      q.count++;
      if ((lane ^ d) < lane) q.leader = false;
    }
  }
  return q;
}

}  // namespace topk

// Min blocks 2, the occupancy d 256 is sized for (topk_traits.h): ptxas may then use up to 255
// registers (without a minimum it held the d 256 causal kernels to 128 on sm_90 and spilled).
template <typename Traits, MmaType T, bool Causal>
__global__ void __launch_bounds__(Traits::kThreads, 2) attention_topk_kernel(const ForwardParams p, const TopkArgs a) {
  using Tr = Traits;
  constexpr int kM = Tr::kBlockM;
  constexpr int kN = Tr::kBlockN;
  constexpr int kBins = Tr::kBins;
  static_assert(kBins == 256, "rows of 256 bins (topk::swizzled_bin)");
  static_assert(kM == 64, "the all -inf test reads two rows' state per lane");
  PSA_DYNAMIC_SHARED(unsigned char, smem);
  std::uint32_t* hist = reinterpret_cast<std::uint32_t*>(smem + Tr::kHistOffset);  // [kM][kBins]
  std::uint16_t* sQ = reinterpret_cast<std::uint16_t*>(smem + Tr::kQOffset);
  std::uint32_t* sPrefix = reinterpret_cast<std::uint32_t*>(smem + Tr::kPrefixOffset);
  std::uint32_t* sRem = reinterpret_cast<std::uint32_t*>(smem + Tr::kRemOffset);
  // Stage s of K, computed rather than held in an array (which would live in local memory).
  auto sK = [&](int stage) { return reinterpret_cast<std::uint16_t*>(smem + Tr::kKOffset + stage * Tr::kTileBytes); };

  const Shape& sh = p.shape;
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane >> 2;  // fragment row group
  const int t = lane & 3;   // fragment column pair
  // Causal: the last query tiles visit the most key tiles, so they go first (blockIdx.x 0), and the
  // grid's tail is the shortest rows rather than the longest.
  const int qTile = Causal ? static_cast<int>(gridDim.x - 1 - blockIdx.x) : static_cast<int>(blockIdx.x);
  const int m0 = qTile * kM;
  const int kvh = h / (sh.heads / sh.kvHeads);

  const std::uint16_t* qBase = p.q + offset_of(p.qStrides, b, h, 0);
  const std::uint16_t* kBase = p.k + offset_of(p.kStrides, b, kvh, 0);
  const bool vec = vector_rows(sh.headDim, p.qStrides, p.q) && vector_rows(sh.headDim, p.kStrides, p.k);
  const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);
  const int total = walk.total;
  auto load_k = [&](int stage, int n) { load_tile<Tr, kN>(sK(stage), kBase, p.kStrides.row, walk.tile(n) * kN, sh.seqK, sh.headDim, vec); };

  // Q fragments, once. sQ is the histogram region: zeroed only after every warp has its fragments.
  load_tile<Tr>(sQ, qBase, p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  QFragments<Tr, true> qf;
  qf.load(sQ, warp, lane);
  __syncthreads();

  for (int pass = 0; pass < Tr::kPasses; ++pass) {
    const int digitShift = 32 - Tr::kDigitBits * (pass + 1);
    const std::uint32_t hiMask = pass == 0 ? 0u : (0xffffffffu << (digitShift + Tr::kDigitBits));  // digits already chosen

    if constexpr (Tr::kStages == 2) {
      if (total > 0) load_k(0, 0);
      cp_async_commit();
    }
    // Zero the histograms.
    {
      uint4 z;
      z.x = z.y = z.z = z.w = 0u;
      uint4* h4 = reinterpret_cast<uint4*>(hist);
      for (int i = tid; i < kM * kBins / 4; i += Tr::kThreads) st(h4 + i, z);
    }
    // This thread's two rows (g and g + 8 of its warp's 16): still selecting, and the prefix so far.
    bool live[2];
    std::uint32_t prefix[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int lrow = warp * 16 + g + 8 * r;
      live[r] = pass == 0 ? m0 + lrow < sh.seqQ : sRem[lrow] != 0u;
      prefix[r] = pass == 0 ? 0u : sPrefix[lrow];
    }
    __syncthreads();  // histograms zeroed before any count

    for (int n = 0; n < total; ++n) {
      int cur = 0;
      if constexpr (Tr::kStages == 2) {
        cur = n & 1;
        if (n + 1 < total) load_k(cur ^ 1, n + 1);  // prefetch the next tile
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        load_k(0, n);
        cp_async_commit();
        cp_async_wait<0>();
      }
      __syncthreads();
      const KeyTile tile = walk.at(n);
#pragma unroll
      for (int n8 = 0; n8 < Tr::kSTiles; n8 += 2) {
        float s[2][4];
        qk_scores<T>(s, qf, sK(cur), n8, lane);
        // Element i of tile n8 + e: row g + 8 (i >> 1), key 2t + (i & 1).
#pragma unroll
        for (int e = 0; e < 2; ++e) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int r = i >> 1;
            bool keep = live[r];
            if (tile.elementMask) {
              const long long pos = static_cast<long long>(m0 + warp * 16 + g + 8 * r) + sh.seqK - sh.seqQ;
              keep = keep && element_allowed(p.mask, Causal, sh.seqK, pos, tile.index * kN + (n8 + e) * 8 + 2 * t + (i & 1), tile.selected);
            }
            const std::uint32_t key = ordered_key(score_of(s[e][i], p.scale));
            const std::uint32_t bin = (key >> digitShift) & (kBins - 1);
            const topk::QuadCount q = topk::quad_count(keep && ((key ^ prefix[r]) & hiMask) == 0u ? bin : topk::kNoBin, lane);
            const int lrow = warp * 16 + g + 8 * r;
            atomic_add_if(q.leader, &hist[topk::swizzled_bin(lrow, bin)], q.count);
          }
        }
      }
      __syncthreads();  // every warp is done with stage `cur` before it is refilled
    }
    if constexpr (Tr::kStages == 2) cp_async_wait<0>();
    __syncthreads();  // histograms complete

    // Choose this digit for each of the warp's 16 rows. Lane l holds bins 255 - 8l down to 248 - 8l.
    for (int rr = 0; rr < 16; ++rr) {
      const int lrow = warp * 16 + rr;
      std::uint32_t rem = pass == 0 ? 0u : sRem[lrow];
      if (pass > 0 && rem == 0u) continue;  // finished (-inf); warp-uniform
      if (pass == 0 && m0 + lrow >= sh.seqQ) {
        if (lane == 0) sRem[lrow] = 0u;
        continue;
      }
      // Bins 248 - 8l .. 251 - 8l (lo) and 252 - 8l .. 255 - 8l (hi). Lanes 4-7 of each 8 read hi
      // first: the 8 lanes of a phase then cover 8 different groups of 4 banks (no conflict).
      const bool hiFirst = (lane & 4) != 0;
      const uint4* loAt = reinterpret_cast<const uint4*>(hist + topk::swizzled_bin(lrow, kBins - 8 - 8 * lane));
      const uint4* hiAt = reinterpret_cast<const uint4*>(hist + topk::swizzled_bin(lrow, kBins - 4 - 8 * lane));
      const uint4 first = ld(hiFirst ? hiAt : loAt);
      const uint4 second = ld(hiFirst ? loAt : hiAt);
      const uint4 lo = hiFirst ? second : first;
      const uint4 hi = hiFirst ? first : second;
      const std::uint32_t c = lo.x + lo.y + lo.z + lo.w + hi.x + hi.y + hi.z + hi.w;
      std::uint32_t incl = c;  // keys in bins >= 248 - 8l
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const std::uint32_t v = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += v;
      }
      std::uint32_t pre = 0u;
      if (pass == 0) {
        const std::uint32_t allowed = __shfl_sync(0xffffffffu, incl, 31);  // |A_i|
        const long long k = topk::row_k_or_none(a, allowed);
        if (k < 0) {
          if (lane == 0) sRem[lrow] = 0u;
          continue;
        }
        rem = static_cast<std::uint32_t>(k);
      } else {
        pre = sPrefix[lrow];
      }
      const std::uint32_t excl = incl - c;
      const unsigned hit = __ballot_sync(0xffffffffu, excl < rem && rem <= incl);
      const int src = lowest_set_lane(hit);
      std::uint32_t digit = 0u, newRem = 0u;
      if (lane == src) {
        const std::uint32_t bins[8] = {hi.w, hi.z, hi.y, hi.x, lo.w, lo.z, lo.y, lo.x};
        std::uint32_t cum = excl;
        bool found = false;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          if (!found && rem <= cum + bins[e]) {
            digit = static_cast<std::uint32_t>(kBins - 1 - 8 * lane - e);
            newRem = rem - cum;
            found = true;
          }
          cum += bins[e];
        }
      }
      digit = __shfl_sync(0xffffffffu, digit, src);
      newRem = __shfl_sync(0xffffffffu, newRem, src);
      if (lane == 0) {
        sPrefix[lrow] = pre | (digit << digitShift);
        sRem[lrow] = newRem;
      }
    }
    __syncthreads();  // row state complete
    // Every row of the CTA -inf: each warp reads the 64 rows' state (2 per lane), alike.
    if (pass == 0 && __ballot_sync(0xffffffffu, (sRem[lane] | sRem[lane + 32]) != 0u) == 0u) break;
  }

  // tau: the selected key, or -inf for rows with |A_i| <= k_i (and empty rows).
  if (tid < kM && m0 + tid < sh.seqQ) {
    const float tau = sRem[tid] != 0u ? ordered_value(sPrefix[tid]) : -INFINITY;
    st(a.thresholds + (static_cast<long long>(b) * sh.heads + h) * sh.seqQ + m0 + tid, tau);
  }
}

}  // namespace psa::gpu
