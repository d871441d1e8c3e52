// The per-row top-k threshold kernel: tau_i = the k_i-th largest score s_ij over the allowed keys
// A_i (ties counted: the k-th element of the multiset sorted descending), -inf when
// |A_i| <= k_i. Only the thresholds are written; no score is ever stored.
//
// One CTA per (64-row query tile, query head h, batch b), 4 warps of 16 rows each, like the
// forward kernel. Radix select on order-preserving 32-bit keys of the float scores, 8-bit digits,
// most significant first, 4 passes. Each pass walks the same key tiles as the forward kernel and
// recomputes the scores on Tensor Cores:
//   Q tile   global -> shared (cp.async) -> A fragments in registers (ldmatrix.x4), once; its
//            shared tile is the histogram region, zeroed after;
//   K        global -> shared (cp.async), double-buffered for d 64/128, single for d 256;
//   S = Q K^T  mma.m16n8k16, K as B[N x K] via ldmatrix.x4 (two 8-key tiles per load);
//   mask     the forward kernel's element mask (causal, the seqK end, window/sinks on entries
//            not marked SELECTED), skipped on BLOCK_FULL tiles exactly as the forward skips it;
//   count    keys whose higher digits equal the row's chosen prefix add 1 to the per-row 256-bin
//            histogram of the current digit (32-bit shared atomics);
//   choose   each warp scans its 16 rows' histograms from the top digit down (warp prefix sum,
//            ballot) and narrows the prefix and the rank still wanted. Pass 0's histogram total
//            is |A_i|, which fixes k_i (ratio mode) and the -inf rows.
// A CTA whose rows are all -inf after pass 0 stops there.
//
// INVARIANT: every score here is bit-identical to the forward kernel's, which keeps key j iff
// `raw * p.scale >= tau` with raw its mma accumulator. raw is computed by the same instruction
// sequence: the accumulator starts at 0.0f and, for k16 = 0, 1, ..., headDim_padded / 16 - 1 in
// ascending order, takes one mma_m16n8k16 with Q fragments (ldmatrix.x4 from a zero-padded Q
// tile) and K fragments (ldmatrix.x4 from a zero-padded K tile), headDim padded to the same 64 /
// 128 / 256; then score = raw * p.scale, one float multiply. (Which accumulators are interleaved
// with which does not matter: each is its own chain.) Do not fold scale into Q, fuse, reorder
// the k16 steps or change the padding without changing the forward kernel alike: tau must be one
// of the very floats the forward compares against.
//
// -0.0f scores count as +0.0f (the forward's >= does not tell them apart).
// Contract: DESIGN.md §2 "Top-k threshold". Tile shapes: topk_traits.h. Parameters: params.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "params.h"
#include "topk_traits.h"

namespace psa::gpu {

// How k_i is chosen: topK > 0 fixes it; else k_i = max(1, ceil(ratio * |A_i|)) with the
// tolerance of lib/validate.ts ceilTolerant. thresholds: [batch, heads, seqQ] float32.
struct TopkArgs {
  int topK = 0;
  double ratio = 0.0;
  float* thresholds = nullptr;
};

namespace topk {

__device__ __forceinline__ std::uint32_t float_bits(float x) {
#if defined(PSA_EMULATED)
  std::uint32_t i;
  std::memcpy(&i, &x, 4);
  return i;
#else
  return __float_as_uint(x);
#endif
}
__device__ __forceinline__ float bits_float(std::uint32_t i) {
#if defined(PSA_EMULATED)
  float x;
  std::memcpy(&x, &i, 4);
  return x;
#else
  return __uint_as_float(i);
#endif
}
__device__ __forceinline__ int lowest_set_lane(unsigned v) {
#if defined(PSA_EMULATED)
  return __builtin_ffs(static_cast<int>(v)) - 1;
#else
  return __ffs(static_cast<int>(v)) - 1;
#endif
}
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// Order-preserving map float -> uint32 (a < b as floats iff key(a) < key(b); -0 taken as +0).
__device__ __forceinline__ std::uint32_t score_key(float s) {
  const std::uint32_t u = float_bits(s == 0.0f ? 0.0f : s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_score(std::uint32_t k) { return bits_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// k_i for a row with n allowed keys, or -1 when |A_i| <= k_i (tau = -inf; empty rows too).
__device__ __forceinline__ long long row_k_or_none(const TopkArgs& a, std::uint32_t n) {
  long long k = a.topK;
  if (k <= 0) {
    const double x = a.ratio * static_cast<double>(n);
    const double c = ceil(x - 1e-9 * fmax(1.0, fabs(x)));
    k = c < 1.0 ? 1 : static_cast<long long>(c);
  }
  return static_cast<long long>(n) <= k ? -1 : k;
}

// Copy rows [row0, row0 + 64) of a [rows x headDim] matrix (rows `rowStride` elements apart)
// into a shared tile of kStride-half rows. Rows at or past `rowEnd` and columns at or past
// `headDim` (up to kHeadDim) are zero-filled, never read. `vec`: 16-byte cp.async copies.
template <typename Traits>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const std::uint16_t* src, long long rowStride, int row0, int rowEnd, int headDim, bool vec) {
  constexpr int kChunks = 64 * Traits::kChunksPerRow;
  static_assert(kChunks % Traits::kThreads == 0, "tile chunks spread evenly over the threads");
#pragma unroll
  for (int it = 0; it < kChunks / Traits::kThreads; ++it) {
    const int c = static_cast<int>(threadIdx.x) + it * Traits::kThreads;
    const int row = c / Traits::kChunksPerRow;
    const int col = (c % Traits::kChunksPerRow) * 8;
    std::uint16_t* d = dst + row * Traits::kStride + col;
    const int grow = row0 + row;
    if (grow < rowEnd && col < headDim) {
      const std::uint16_t* s = src + static_cast<long long>(grow) * rowStride + col;
      if (vec) {
        cp_async_16(d, s);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) d[e] = col + e < headDim ? s[e] : std::uint16_t(0);
      }
    } else {
      uint4 z;
      z.x = z.y = z.z = z.w = 0u;
      *reinterpret_cast<uint4*>(d) = z;
    }
  }
}

}  // namespace topk

template <typename Traits, MmaType T, bool Causal>
__global__ void __launch_bounds__(Traits::kThreads) attention_topk_kernel(const ForwardParams p, const TopkArgs a) {
  using Tr = Traits;
  constexpr int kM = Tr::kBlockM;
  constexpr int kN = Tr::kBlockN;
  constexpr int kStride = Tr::kStride;
  constexpr int kBins = Tr::kBins;
  PSA_DYNAMIC_SHARED(unsigned char, smem);
  std::uint32_t* hist = reinterpret_cast<std::uint32_t*>(smem + Tr::kHistOffset);  // [kM][kBins]
  std::uint16_t* sQ = reinterpret_cast<std::uint16_t*>(smem + Tr::kQOffset);
  std::uint32_t* sPrefix = reinterpret_cast<std::uint32_t*>(smem + Tr::kPrefixOffset);
  std::uint32_t* sRem = reinterpret_cast<std::uint32_t*>(smem + Tr::kRemOffset);
  std::uint32_t* sAny = reinterpret_cast<std::uint32_t*>(smem + Tr::kFlagOffset);
  // Stage s of K, computed rather than held in an array (which would live in local memory).
  auto sK = [&](int stage) { return reinterpret_cast<std::uint16_t*>(smem + Tr::kKOffset + stage * Tr::kKTileBytes); };

  const int qTile = static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane >> 2;   // fragment row group
  const int t = lane & 3;    // fragment column pair
  const int lm = lane >> 3;  // ldmatrix: matrix whose row address this lane gives
  const int lr = lane & 7;   //           and which row of it
  const int m0 = qTile * kM;
  const int kvh = h / (p.heads / p.kvHeads);
  const int shift = p.seqK - p.seqQ;  // query i sits at key position i + shift

  const std::uint16_t* qBase = p.q + b * p.qBatchStride + h * p.qHeadStride;
  const std::uint16_t* kBase = p.k + b * p.kBatchStride + kvh * p.kHeadStride;
  const bool vec = (p.headDim % 8 == 0) && ((p.qRowStride | p.qHeadStride | p.qBatchStride | p.kRowStride | p.kHeadStride | p.kBatchStride) % 8 == 0) &&
                   (((reinterpret_cast<std::uintptr_t>(p.q) | reinterpret_cast<std::uintptr_t>(p.k)) & 15) == 0);

  // The key tiles of this row, in the forward kernel's order: from the layout (an entry J of a
  // blockSize layout covers 64-key tiles J * blockSize / 64 .. + blockSize / 64 - 1), or every
  // causally reachable tile (dense).
  const bool dense = p.layoutOffsets == nullptr;
  const int tilesPerEntry = dense ? 1 : p.blockSize / kN;
  int entry0 = 0;
  int count;
  if (dense) {
    int last = (p.seqK + kN - 1) / kN - 1;
    if (Causal) {
      const int lastPos = topk::imin(m0 + kM, p.seqQ) - 1 + shift;  // position of the tile's last valid row
      last = lastPos < 0 ? -1 : topk::imin(last, lastPos / kN);
    }
    count = last + 1;
  } else {
    const int numQueryBlocks = (p.seqQ + p.blockSize - 1) / p.blockSize;
    const int row = (b * p.heads + h) * numQueryBlocks + m0 / p.blockSize;
    entry0 = p.layoutOffsets[row];
    count = p.layoutOffsets[row + 1] - entry0;
  }
  const int total = count * tilesPerEntry;
  auto tile_at = [&](int n) {
    return dense ? n : static_cast<int>(p.layoutIndices[entry0 + n / tilesPerEntry]) * tilesPerEntry + n % tilesPerEntry;
  };
  auto flags_at = [&](int n, int kb) -> unsigned {
    if (!dense) return p.layoutFlags[entry0 + n / tilesPerEntry];
    unsigned f = kBlockSelected;
    if ((kb + 1) * kN <= p.seqK && (!Causal || (kb + 1) * kN - 1 <= m0 + shift)) f |= kBlockFull;
    return f;
  };
  auto load_k = [&](int stage, int kb) { topk::load_tile<Tr>(sK(stage), kBase, p.kRowStride, kb * kN, p.seqK, p.headDim, vec); };

  // Q fragments, once. sQ is the histogram region: zeroed only after every warp has its fragments.
  topk::load_tile<Tr>(sQ, qBase, p.qRowStride, m0, p.seqQ, p.headDim, vec);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  std::uint32_t qf[Tr::kQK16][4];
#pragma unroll
  for (int k16 = 0; k16 < Tr::kQK16; ++k16) {
    ldmatrix<4, false>(qf[k16], sQ + (warp * 16 + lr + 8 * (lm & 1)) * kStride + k16 * 16 + 8 * (lm >> 1));
  }
  __syncthreads();

  for (int pass = 0; pass < Tr::kPasses; ++pass) {
    const int digitShift = 32 - Tr::kDigitBits * (pass + 1);
    const std::uint32_t hiMask = pass == 0 ? 0u : (0xffffffffu << (digitShift + Tr::kDigitBits));  // digits already chosen

    if constexpr (Tr::kStages == 2) {
      if (total > 0) load_k(0, tile_at(0));
      cp_async_commit();
    }
    // Zero the histograms (and the any-row flag, once).
    {
      uint4 z;
      z.x = z.y = z.z = z.w = 0u;
      uint4* h4 = reinterpret_cast<uint4*>(hist);
      for (int i = tid; i < kM * kBins / 4; i += Tr::kThreads) h4[i] = z;
      if (pass == 0 && tid == 0) sAny[0] = 0u;
    }
    // This thread's two rows (g and g + 8 of its warp's 16): still selecting, and the prefix so far.
    bool live[2];
    std::uint32_t prefix[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int lrow = warp * 16 + g + 8 * r;
      live[r] = pass == 0 ? m0 + lrow < p.seqQ : sRem[lrow] != 0u;
      prefix[r] = pass == 0 ? 0u : sPrefix[lrow];
    }
    __syncthreads();  // histograms zeroed before any count

    for (int n = 0; n < total; ++n) {
      int cur = 0;
      if constexpr (Tr::kStages == 2) {
        cur = n & 1;
        if (n + 1 < total) load_k(cur ^ 1, tile_at(n + 1));  // prefetch the next tile
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        load_k(0, tile_at(n));
        cp_async_commit();
        cp_async_wait<0>();
      }
      __syncthreads();
      const int kb = tile_at(n);
      if (kb * kN < p.seqK) {  // tiles of an entry past the keys' end hold no key
        const unsigned flags = flags_at(n, kb);
        const bool elementMask = !(flags & kBlockFull) || (kb + 1) * kN > p.seqK;
        const bool selected = (flags & kBlockSelected) != 0;
        const std::uint16_t* k_s = sK(cur);
#pragma unroll
        for (int n8 = 0; n8 < Tr::kSTiles; n8 += 2) {
          // Two 8-key tiles; see the INVARIANT above for why this sequence must not change.
          float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
          for (int k16 = 0; k16 < Tr::kQK16; ++k16) {
            // Matrices: (keys n8, d lo), (keys n8, d hi), (keys n8+1, d lo), (keys n8+1, d hi).
            std::uint32_t kf[4];
            ldmatrix<4, false>(kf, k_s + ((n8 + (lm >> 1)) * 8 + lr) * kStride + k16 * 16 + 8 * (lm & 1));
            const std::uint32_t b0[2] = {kf[0], kf[1]};
            const std::uint32_t b1[2] = {kf[2], kf[3]};
            mma_m16n8k16<T>(s[0], qf[k16], b0, s[0]);
            mma_m16n8k16<T>(s[1], qf[k16], b1, s[1]);
          }
          // Element i of tile n8 + e: row g + 8 (i >> 1), key 2t + (i & 1).
#pragma unroll
          for (int e = 0; e < 2; ++e) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int r = i >> 1;
              const int lrow = warp * 16 + g + 8 * r;
              bool keep = live[r];
              if (elementMask) {
                const int j = kb * kN + (n8 + e) * 8 + 2 * t + (i & 1);
                const int pos = m0 + lrow + shift;
                keep = keep && j < p.seqK;
                if (Causal) keep = keep && j <= pos;
                if (!selected) {
                  const bool inWindow = p.windowLeft >= 0 && j >= pos - p.windowLeft && j <= pos + p.windowRight;
                  keep = keep && (inWindow || j < p.globalTokens);
                }
              }
              if (keep) {
                const std::uint32_t key = topk::score_key(s[e][i] * p.scale);
                if (((key ^ prefix[r]) & hiMask) == 0u) atomicAdd(&hist[lrow * kBins + ((key >> digitShift) & (kBins - 1))], 1u);
              }
            }
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
      if (pass == 0 && m0 + lrow >= p.seqQ) {
        if (lane == 0) sRem[lrow] = 0u;
        continue;
      }
      const uint4* hp = reinterpret_cast<const uint4*>(hist + lrow * kBins + (kBins - 8) - 8 * lane);
      const uint4 lo = hp[0];  // bins 248 - 8l .. 251 - 8l
      const uint4 hi = hp[1];  // bins 252 - 8l .. 255 - 8l
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
      const int src = topk::lowest_set_lane(hit);
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
        if (pass == 0) atomicExch(&sAny[0], 1u);
      }
    }
    __syncthreads();  // row state complete
    if (pass == 0 && sAny[0] == 0u) break;  // every row of the CTA is -inf
  }

  // tau: the selected key, or -inf for rows with |A_i| <= k_i (and empty rows).
  if (tid < kM && m0 + tid < p.seqQ) {
    const float tau = sRem[tid] != 0u ? topk::key_score(sPrefix[tid]) : -INFINITY;
    a.thresholds[(static_cast<long long>(b) * p.heads + h) * p.seqQ + m0 + tid] = tau;
  }
}

}  // namespace psa::gpu
