// The fused sparse attention forward kernel, FlashAttention-2 style, on Tensor Cores.
//
// One CTA per (query block I, query head h, batch b): 64 query rows, 4 warps of 16 rows each.
// It visits only the key blocks that the layout lists for (b, h, I) (or, without a layout, every
// causally reachable key block), 64 keys at a time:
//   Q tile   global -> shared (cp.async) -> A fragments in registers (ldmatrix.x4), once; its
//            shared tile is then reused as the second V stage;
//   K, V     global -> shared (cp.async), double-buffered: the next listed block is prefetched
//            while this one computes;
//   S = Q K^T    mma.m16n8k16 with K as B[N x K] (ldmatrix.x4: two 8-key tiles per load);
//   mask     per element only for tiles not marked BLOCK_FULL (causal, window, sinks, the seqK
//            end) and, when given, the per-row top-k threshold;
//   softmax  online, in log2 units (x = s * scale * log2 e), row max over the 4 lanes of a row
//            with __shfl_xor_sync, a row max of -inf guarded against NaN;
//   O += P V  P rounded to 16 bits in registers: the accumulators of two adjacent 8-key S tiles
//            are exactly one A fragment (NOTES.md); V as B via ldmatrix.x4.trans;
//   end      O /= l, O = 0 and LSE = -inf for rows without a kept key, LSE = m + ln l.
// Contract: DESIGN.md §2. Tile shapes: forward_traits.h. Parameters: params.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "forward_traits.h"
#include "params.h"

namespace psa::gpu {
namespace fwd {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ int float_bits(float x) {
#if defined(PSA_EMULATED)
  int i;
  std::memcpy(&i, &x, 4);
  return i;
#else
  return __float_as_int(x);
#endif
}
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ float bits_float(int i) {
#if defined(PSA_EMULATED)
  float x;
  std::memcpy(&x, &i, 4);
  return x;
#else
  return __int_as_float(i);
#endif
}

// Two floats rounded to nearest even into one register of two 16-bit values, `lo` in the low half.
template <MmaType T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t u;
  if constexpr (T == MmaType::BF16) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
#if defined(PSA_EMULATED)
    std::memcpy(&u, &v, 4);
#else
    u = reinterpret_cast<const std::uint32_t&>(v);
#endif
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
#if defined(PSA_EMULATED)
    std::memcpy(&u, &v, 4);
#else
    u = reinterpret_cast<const std::uint32_t&>(v);
#endif
  }
  return u;
}

// DESIGN.md §2 polynomial exp2: t = max(t, -127), n = floor(t), f = t - n, p(f) by Horner in
// float32 (one FMA per step), times 2^n by adding n to the exponent. Degree is the unrolled
// Horner length: coefficients above a launch's true degree are zero (the launcher pads them).
template <int Degree>
__device__ __forceinline__ float exp2_poly(float t, const float (&c)[9]) {
  t = fmaxf(t, -127.0f);
  const float n = floorf(t);
  const float f = t - n;
  float p = c[Degree];
#pragma unroll
  for (int d = Degree - 1; d >= 0; --d) p = fmaf(p, f, c[d]);
  return bits_float(static_cast<int>(static_cast<unsigned>(float_bits(p)) + (static_cast<unsigned>(static_cast<int>(n)) << 23)));
}

// E(x) for x = s - m in log2 units (x <= 0); a masked score (-inf) gives exactly 0.
template <int PolyDegree>
__device__ __forceinline__ float softmax_exp2(float x, const float (&c)[9]) {
  if constexpr (PolyDegree == 0) {
    return exp2f(x);  // exp2f(-inf) = 0
  } else {
    return x == -INFINITY ? 0.0f : exp2_poly<PolyDegree>(x, c);
  }
}

// Copy rows [row0, row0 + 64) of a [rows x headDim] matrix (rows `rowStride` elements apart)
// into a shared tile of kStride-half rows. Rows at or past `rowEnd` and columns at or past
// `headDim` (up to kHeadDim) are zero-filled, never read. `vec`: 16-byte cp.async copies
// (headDim, strides and base pointer multiples of 8 elements / 16 bytes); else plain loads.
template <typename Traits>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const std::uint16_t* src, long long rowStride, int row0, int rowEnd, int headDim, bool vec) {
  constexpr int kChunks = Traits::kBlockN * Traits::kChunksPerRow;
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

}  // namespace fwd

template <typename Traits, MmaType T, bool Causal, int PolyDegree>
__global__ void __launch_bounds__(Traits::kThreads) attention_forward_kernel(const ForwardParams p) {
  using Tr = Traits;
  constexpr int kM = Tr::kBlockM;
  constexpr int kN = Tr::kBlockN;
  constexpr int kStride = Tr::kStride;
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  std::uint16_t* sQ = smem + Tr::kQOffset;
  // Stage s of K / V, computed rather than held in an array (which would live in local memory).
  auto sK = [&](int stage) { return smem + Tr::kKOffset + stage * Tr::kKVTileHalves; };
  auto sV = [&](int stage) { return smem + Tr::kVOffset + stage * Tr::kKVTileHalves; };

  const int qBlock = static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2;  // fragment row group
  const int t = lane & 3;   // fragment column pair
  const int lm = lane >> 3;  // ldmatrix: matrix whose row address this lane gives
  const int lr = lane & 7;   //           and which row of it
  const int m0 = qBlock * kM;
  const int kvh = h / (p.heads / p.kvHeads);
  const int shift = p.seqK - p.seqQ;  // query i sits at key position i + shift

  const std::uint16_t* qBase = p.q + b * p.qBatchStride + h * p.qHeadStride;
  const std::uint16_t* kBase = p.k + b * p.kBatchStride + kvh * p.kHeadStride;
  const std::uint16_t* vBase = p.v + b * p.vBatchStride + kvh * p.vHeadStride;
  // 16-byte copies need 16-byte aligned rows: head dim, strides and bases in multiples of 8 elements.
  const bool vec = (p.headDim % 8 == 0) && ((p.qRowStride | p.qHeadStride | p.qBatchStride | p.kRowStride | p.kHeadStride | p.kBatchStride |
                                             p.vRowStride | p.vHeadStride | p.vBatchStride) % 8 == 0) &&
                   (((reinterpret_cast<std::uintptr_t>(p.q) | reinterpret_cast<std::uintptr_t>(p.k) | reinterpret_cast<std::uintptr_t>(p.v)) & 15) == 0);

  // The key blocks of this row: from the layout, or every causally reachable one (dense).
  const bool dense = p.layoutOffsets == nullptr;
  int entry0 = 0;
  int count;
  if (dense) {
    int last = (p.seqK + kN - 1) / kN - 1;
    if (Causal) {
      const int lastPos = fwd::imin(m0 + kM, p.seqQ) - 1 + shift;  // position of the tile's last valid row
      last = lastPos < 0 ? -1 : fwd::imin(last, lastPos / kN);
    }
    count = last + 1;
  } else {
    const int row = (b * p.heads + h) * ((p.seqQ + kM - 1) / kM) + qBlock;
    entry0 = p.layoutOffsets[row];
    count = p.layoutOffsets[row + 1] - entry0;
  }
  auto block_at = [&](int n) { return dense ? n : static_cast<int>(p.layoutIndices[entry0 + n]); };
  auto flags_at = [&](int n, int kb) -> unsigned {
    if (!dense) return p.layoutFlags[entry0 + n];
    unsigned f = kBlockSelected;
    if ((kb + 1) * kN <= p.seqK && (!Causal || (kb + 1) * kN - 1 <= m0 + shift)) f |= kBlockFull;
    return f;
  };
  auto load_kv = [&](int stage, int kb) {
    fwd::load_tile<Tr>(sK(stage), kBase, p.kRowStride, kb * kN, p.seqK, p.headDim, vec);
    fwd::load_tile<Tr>(sV(stage), vBase, p.vRowStride, kb * kN, p.seqK, p.headDim, vec);
  };

  // Group 0: Q. Group 1: the first K/V block (empty when the row visits none).
  fwd::load_tile<Tr>(sQ, qBase, p.qRowStride, m0, p.seqQ, p.headDim, vec);
  cp_async_commit();
  if (count > 0) load_kv(0, block_at(0));
  cp_async_commit();
  cp_async_wait<1>();
  __syncthreads();

  std::uint32_t qf[Tr::kQK16][4];
#pragma unroll
  for (int k16 = 0; k16 < Tr::kQK16; ++k16) {
    ldmatrix<4, false>(qf[k16], sQ + (warp * 16 + lr + 8 * (lm & 1)) * kStride + k16 * 16 + 8 * (lm >> 1));
  }
  __syncthreads();  // sQ is V stage 1: every warp has its Q fragments before the first prefetch refills it

  float coef[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) coef[i] = p.polyCoefficients[i];

  const bool topK = p.threshold != nullptr;
  float tau[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = m0 + warp * 16 + g + 8 * r;
    tau[r] = topK && row < p.seqQ ? p.threshold[(static_cast<long long>(b) * p.heads + h) * p.seqQ + row] : -INFINITY;
  }

  const float scaleLog2 = p.scale * fwd::kLog2e;
  float o[Tr::kOTiles][4];
#pragma unroll
  for (int d8 = 0; d8 < Tr::kOTiles; ++d8) o[d8][0] = o[d8][1] = o[d8][2] = o[d8][3] = 0.0f;
  float mRow[2] = {-INFINITY, -INFINITY};  // running max, log2 units
  float lRow[2] = {0.0f, 0.0f};            // running sum of this lane's columns

  for (int n = 0; n < count; ++n) {
    const int cur = n & 1;
    if (n + 1 < count) load_kv(cur ^ 1, block_at(n + 1));  // prefetch the next listed block
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int kb = block_at(n);
    const unsigned flags = flags_at(n, kb);
    const std::uint16_t* k_s = sK(cur);
    const std::uint16_t* v_s = sV(cur);

    // S = Q K^T for this warp's 16 rows x 64 keys.
    float s[Tr::kSTiles][4];
#pragma unroll
    for (int n8 = 0; n8 < Tr::kSTiles; ++n8) s[n8][0] = s[n8][1] = s[n8][2] = s[n8][3] = 0.0f;
#pragma unroll
    for (int k16 = 0; k16 < Tr::kQK16; ++k16) {
#pragma unroll
      for (int n8 = 0; n8 < Tr::kSTiles; n8 += 2) {
        // Matrices: (keys n8, d lo), (keys n8, d hi), (keys n8+1, d lo), (keys n8+1, d hi).
        std::uint32_t kf[4];
        ldmatrix<4, false>(kf, k_s + ((n8 + (lm >> 1)) * 8 + lr) * kStride + k16 * 16 + 8 * (lm & 1));
        const std::uint32_t b0[2] = {kf[0], kf[1]};
        const std::uint32_t b1[2] = {kf[2], kf[3]};
        mma_m16n8k16<T>(s[n8], qf[k16], b0, s[n8]);
        mma_m16n8k16<T>(s[n8 + 1], qf[k16], b1, s[n8 + 1]);
      }
    }

    // Scores to log2 units; masked ones to -inf. Element i of tile n8: row g + 8 (i >> 1), key 2t + (i & 1).
    const bool elementMask = !(flags & kBlockFull) || (kb + 1) * kN > p.seqK;
    const bool selected = (flags & kBlockSelected) != 0;
#pragma unroll
    for (int n8 = 0; n8 < Tr::kSTiles; ++n8) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float raw = s[n8][i];
        bool keep = true;
        if (elementMask) {
          const int j = kb * kN + n8 * 8 + 2 * t + (i & 1);
          const int pos = m0 + warp * 16 + g + 8 * (i >> 1) + shift;
          keep = j < p.seqK;
          if (Causal) keep = keep && j <= pos;
          if (!selected) {
            const bool inWindow = p.windowLeft >= 0 && j >= pos - p.windowLeft && j <= pos + p.windowRight;
            keep = keep && (inWindow || j < p.globalTokens);
          }
        }
        if (topK) keep = keep && raw * p.scale >= tau[i >> 1];
        s[n8][i] = keep ? raw * scaleLog2 : -INFINITY;
      }
    }

    // Online softmax, per row r (this lane holds 16 of the row's 64 columns; 4 lanes per row).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = mRow[r];
#pragma unroll
      for (int n8 = 0; n8 < Tr::kSTiles; ++n8) mx = fmaxf(mx, fmaxf(s[n8][2 * r], s[n8][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float ms = mx == -INFINITY ? 0.0f : mx;  // no kept key yet: keep exp2(-inf - 0) = 0, not NaN
      const float corr = exp2f(mRow[r] - ms);
      mRow[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int n8 = 0; n8 < Tr::kSTiles; ++n8) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = fwd::softmax_exp2<PolyDegree>(s[n8][2 * r + e] - ms, coef);
          s[n8][2 * r + e] = pv;
          sum += pv;
        }
      }
      lRow[r] = lRow[r] * corr + sum;
#pragma unroll
      for (int d8 = 0; d8 < Tr::kOTiles; ++d8) {
        o[d8][2 * r] *= corr;
        o[d8][2 * r + 1] *= corr;
      }
    }

    // O += P V: two adjacent S tiles (keys 16kk..16kk+15) form the A fragment of step kk.
#pragma unroll
    for (int kk = 0; kk < Tr::kPV16; ++kk) {
      const std::uint32_t a[4] = {fwd::pack2<T>(s[2 * kk][0], s[2 * kk][1]), fwd::pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                  fwd::pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), fwd::pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d8 = 0; d8 < Tr::kOTiles; d8 += 2) {
        // Matrices (transposed): (keys lo, d8), (keys hi, d8), (keys lo, d8+1), (keys hi, d8+1).
        std::uint32_t vf[4];
        ldmatrix<4, true>(vf, v_s + (kk * 16 + 8 * (lm & 1) + lr) * kStride + (d8 + (lm >> 1)) * 8);
        const std::uint32_t b0[2] = {vf[0], vf[1]};
        const std::uint32_t b1[2] = {vf[2], vf[3]};
        mma_m16n8k16<T>(o[d8], a, b0, o[d8]);
        mma_m16n8k16<T>(o[d8 + 1], a, b1, o[d8 + 1]);
      }
    }
    __syncthreads();  // every warp is done with stage `cur` before it is refilled
  }
  cp_async_wait<0>();

  // O /= l; rows without a kept key: O = 0, LSE = -inf.
  float* oBase = p.o + b * p.oBatchStride + h * p.oHeadStride;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = lRow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const bool empty = !(l > 0.0f);
    const float inv = empty ? 0.0f : 1.0f / l;
    const int row = m0 + warp * 16 + g + 8 * r;
    if (row < p.seqQ) {
      float* orow = oBase + static_cast<long long>(row) * p.oRowStride;
#pragma unroll
      for (int d8 = 0; d8 < Tr::kOTiles; ++d8) {
        const int col = d8 * 8 + 2 * t;
        if (col < p.headDim) orow[col] = o[d8][2 * r] * inv;
        if (col + 1 < p.headDim) orow[col + 1] = o[d8][2 * r + 1] * inv;
      }
      if (p.lse != nullptr && t == 0) {
        p.lse[(static_cast<long long>(b) * p.heads + h) * p.seqQ + row] = empty ? -INFINITY : mRow[r] * fwd::kLn2 + logf(l);
      }
    }
  }
}

}  // namespace psa::gpu
