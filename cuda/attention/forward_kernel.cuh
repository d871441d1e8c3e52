// The fused sparse attention forward kernel, FlashAttention-2 style, on Tensor Cores.
//
// One CTA per (64-row query tile x, query head h, batch b): 4 warps of 16 rows each. It visits
// only the 64-key tiles that the layout lists for the tile's query block (or, without a layout,
// every causally reachable key tile), one at a time:
//   Q tile   global -> shared (cp.async); up to d 128 its A fragments go to registers
//            (ldmatrix.x4) once and its shared tile is reused as the V buffer; at d 256 Q stays
//            in shared memory and each k16 step reloads its fragment (ForwardTraits::kQInRegisters);
//   K, V     global -> shared (cp.async), one buffer each (FlashAttention 2's pipeline): step n
//            issues V_n before S = Q K_n^T and, once every warp is done with K_n, K_{n+1}, which
//            then lands during the softmax and P V of step n;
//   S = Q K^T    mma.m16n8k16 with K as B[N x K] (ldmatrix.x4: two 8-key tiles per load);
//   mask     per element only for tiles not marked BLOCK_FULL (causal, window, sinks, the seqK
//            end) and, when given, the per-row top-k threshold;
//   softmax  online, in log2 units (x = s * scale * log2 e), row max over the 4 lanes of a row
//            with __shfl_xor_sync, a row max of -inf guarded against NaN;
//   O += P V  P rounded to 16 bits in registers: the accumulators of two adjacent 8-key S tiles
//            are exactly one A fragment (NOTES.md); V as B via ldmatrix.x4.trans;
//   end      O /= l, O = 0 and LSE = -inf for rows without a kept key, LSE = m + ln l, and the
//            per-row count of kept keys when asked.
// Layout rows: a blockSize layout (blockSize a multiple of 64, up to 256) has numQueryBlocks =
// ceil(seqQ / blockSize) rows per (b, h); tile x reads row (b * heads + h) * numQueryBlocks +
// x * 64 / blockSize, and each entry J stands for the 64-key tiles J * blockSize / 64 + 0 ..
// blockSize / 64 - 1 (those starting at or past seqK skipped), all with the entry's flags: FULL
// for the block is FULL for each sub-tile; a tile not FULL gets the element mask.
//
// INVARIANT (the top-k threshold kernel, topk_kernel.cuh, relies on it): the raw score of
// (i, j) is one float accumulator that starts at 0.0f and takes, for k16 = 0, 1, ..., kQK16 - 1 in
// ascending order, one mma_m16n8k16 of the zero-padded Q and K fragments (headDim padded to the
// instantiation's 64 / 128 / 256); the top-k test is `raw * p.scale >= tau` and the score is
// raw * p.scale, one float multiply. Do not fold scale into Q, split or reorder the k16 steps or
// change the padding without changing the top-k kernel alike.
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
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
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
// Each thread owns one 16-byte column chunk and walks rows kRowsPerPass apart with running
// pointers, so that nothing per row stays live across the main loop (at d 256 the 128 O
// accumulators leave few registers); the plain-load path is not unrolled for the same reason.
template <typename Traits>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const std::uint16_t* src, long long rowStride, int row0, int rowEnd, int headDim, bool vec) {
  static_assert(Traits::kThreads % Traits::kChunksPerRow == 0, "whole rows per pass");
  constexpr int kRowsPerPass = Traits::kThreads / Traits::kChunksPerRow;
  constexpr int kPasses = Traits::kBlockN / kRowsPerPass;
  const int tid = static_cast<int>(threadIdx.x);
  const int col = (tid % Traits::kChunksPerRow) * 8;
  const int r0 = tid / Traits::kChunksPerRow;
  std::uint16_t* d = dst + r0 * Traits::kStride + col;
  const std::uint16_t* s = src + static_cast<long long>(row0 + r0) * rowStride + col;
  const int rows = col < headDim ? imin(rowEnd - row0 - r0, Traits::kBlockN) : 0;  // rows it[*kRowsPerPass] < rows are copied
  uint4 z;
  z.x = z.y = z.z = z.w = 0u;
  if (vec) {
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      if (it * kRowsPerPass < rows) {
        cp_async_16(d, s);
      } else {
        *reinterpret_cast<uint4*>(d) = z;
      }
      d += kRowsPerPass * Traits::kStride;
      s += kRowsPerPass * rowStride;
    }
  } else {
#pragma unroll 1
    for (int it = 0; it < kPasses; ++it) {
      if (it * kRowsPerPass < rows) {
        for (int e = 0; e < 8; ++e) d[e] = col + e < headDim ? s[e] : std::uint16_t(0);
      } else {
        *reinterpret_cast<uint4*>(d) = z;
      }
      d += kRowsPerPass * Traits::kStride;
      s += kRowsPerPass * rowStride;
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
  std::uint16_t* const sQ = smem + Tr::kQOffset;
  std::uint16_t* const sK = smem + Tr::kKOffset;
  std::uint16_t* const sV = smem + Tr::kVOffset;

  const int qTile = static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2;   // fragment row group
  const int t = lane & 3;    // fragment column pair
  const int lm = lane >> 3;  // ldmatrix: matrix whose row address this lane gives
  const int lr = lane & 7;   //           and which row of it
  const int m0 = qTile * kM;
  const int kvh = h / (p.heads / p.kvHeads);
  const int shift = p.seqK - p.seqQ;  // query i sits at key position i + shift

  const std::uint16_t* qBase = p.q + b * p.qBatchStride + h * p.qHeadStride;
  const std::uint16_t* kBase = p.k + b * p.kBatchStride + kvh * p.kHeadStride;
  const std::uint16_t* vBase = p.v + b * p.vBatchStride + kvh * p.vHeadStride;
  // 16-byte copies need 16-byte aligned rows: head dim, strides and bases in multiples of 8 elements.
  const bool vec = (p.headDim % 8 == 0) && ((p.qRowStride | p.qHeadStride | p.qBatchStride | p.kRowStride | p.kHeadStride | p.kBatchStride |
                                             p.vRowStride | p.vHeadStride | p.vBatchStride) % 8 == 0) &&
                   (((reinterpret_cast<std::uintptr_t>(p.q) | reinterpret_cast<std::uintptr_t>(p.k) | reinterpret_cast<std::uintptr_t>(p.v)) & 15) == 0);

  // The 64-key tiles of this query tile: from the layout (entry J of a blockSize layout is the
  // tiles J * perEntry + 0 .. perEntry - 1), or every causally reachable one (dense).
  const bool dense = p.layoutOffsets == nullptr;
  const int perEntry = dense ? 1 : p.blockSize / kN;
  int entry0 = 0;
  int total;  // tiles to visit
  if (dense) {
    int last = (p.seqK + kN - 1) / kN - 1;
    if (Causal) {
      const int lastPos = fwd::imin(m0 + kM, p.seqQ) - 1 + shift;  // position of the tile's last valid row
      last = lastPos < 0 ? -1 : fwd::imin(last, lastPos / kN);
    }
    total = last + 1;
  } else {
    const int numQueryBlocks = (p.seqQ + p.blockSize - 1) / p.blockSize;
    const int row = (b * p.heads + h) * numQueryBlocks + m0 / p.blockSize;
    entry0 = p.layoutOffsets[row];
    const int count = p.layoutOffsets[row + 1] - entry0;
    total = 0;
    if (count > 0) {
      // Entries ascend, so only the last one can hold tiles at or past seqK: drop them.
      const int lastTile0 = static_cast<int>(p.layoutIndices[entry0 + count - 1]) * perEntry;
      const int keyTiles = (p.seqK + kN - 1) / kN;
      total = (count - 1) * perEntry + fwd::imax(0, fwd::imin(perEntry, keyTiles - lastTile0));
    }
  }
  auto tile_at = [&](int n) { return dense ? n : static_cast<int>(p.layoutIndices[entry0 + n / perEntry]) * perEntry + n % perEntry; };
  auto flags_at = [&](int n, int kb) -> unsigned {
    if (!dense) return p.layoutFlags[entry0 + n / perEntry];
    unsigned f = kBlockSelected;
    if ((kb + 1) * kN <= p.seqK && (!Causal || (kb + 1) * kN - 1 <= m0 + shift)) f |= kBlockFull;
    return f;
  };

  // One group: Q and the first K tile (K alone when the row visits none).
  fwd::load_tile<Tr>(sQ, qBase, p.qRowStride, m0, p.seqQ, p.headDim, vec);
  if (total > 0) fwd::load_tile<Tr>(sK, kBase, p.kRowStride, tile_at(0) * kN, p.seqK, p.headDim, vec);
  cp_async_commit();

  // Q fragments in registers (d <= 128). The V buffer that aliases sQ is first written after the
  // barrier at the top of step 0, which every warp reaches only with its fragments loaded.
  const int qRow = (warp * 16 + lr + 8 * (lm & 1)) * kStride + 8 * (lm >> 1);  // this lane's ldmatrix row of Q
  std::uint32_t qf[Tr::kQInRegisters ? Tr::kQK16 : 1][4];
  if constexpr (Tr::kQInRegisters) {
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int k16 = 0; k16 < Tr::kQK16; ++k16) ldmatrix<4, false>(qf[k16], sQ + qRow + k16 * 16);
  }

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
  int kept[2] = {0, 0};                    // kept keys among this lane's columns

  for (int n = 0; n < total; ++n) {
    const int kb = tile_at(n);
    cp_async_wait<0>();
    __syncthreads();  // K_n has landed for every thread; every warp is done with V_{n-1} (and Q, aliased on V)
    fwd::load_tile<Tr>(sV, vBase, p.vRowStride, kb * kN, p.seqK, p.headDim, vec);
    cp_async_commit();

    // S = Q K^T for this warp's 16 rows x 64 keys. The INVARIANT above: each accumulator starts
    // at 0 and takes the k16 steps in ascending order.
    float s[Tr::kSTiles][4];
#pragma unroll
    for (int n8 = 0; n8 < Tr::kSTiles; ++n8) s[n8][0] = s[n8][1] = s[n8][2] = s[n8][3] = 0.0f;
#pragma unroll
    for (int k16 = 0; k16 < Tr::kQK16; ++k16) {
      std::uint32_t qs[4];
      if constexpr (!Tr::kQInRegisters) ldmatrix<4, false>(qs, sQ + qRow + k16 * 16);
      const std::uint32_t(&a)[4] = Tr::kQInRegisters ? qf[Tr::kQInRegisters ? k16 : 0] : qs;
#pragma unroll
      for (int n8 = 0; n8 < Tr::kSTiles; n8 += 2) {
        // Matrices: (keys n8, d lo), (keys n8, d hi), (keys n8+1, d lo), (keys n8+1, d hi).
        std::uint32_t kf[4];
        ldmatrix<4, false>(kf, sK + ((n8 + (lm >> 1)) * 8 + lr) * kStride + k16 * 16 + 8 * (lm & 1));
        const std::uint32_t b0[2] = {kf[0], kf[1]};
        const std::uint32_t b1[2] = {kf[2], kf[3]};
        mma_m16n8k16<T>(s[n8], a, b0, s[n8]);
        mma_m16n8k16<T>(s[n8 + 1], a, b1, s[n8 + 1]);
      }
    }

    cp_async_wait<0>();
    __syncthreads();  // V_n has landed for every thread; every warp is done with K_n
    if (n + 1 < total) fwd::load_tile<Tr>(sK, kBase, p.kRowStride, tile_at(n + 1) * kN, p.seqK, p.headDim, vec);
    cp_async_commit();

    // Scores to log2 units; masked ones to -inf. Element i of tile n8: row g + 8 (i >> 1), key 2t + (i & 1).
    const unsigned flags = flags_at(n, kb);
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
        if (topK) keep = keep && raw * p.scale >= tau[i >> 1];  // the INVARIANT's test
        kept[i >> 1] += keep ? 1 : 0;
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
        ldmatrix<4, true>(vf, sV + (kk * 16 + 8 * (lm & 1) + lr) * kStride + (d8 + (lm >> 1)) * 8);
        const std::uint32_t b0[2] = {vf[0], vf[1]};
        const std::uint32_t b1[2] = {vf[2], vf[3]};
        mma_m16n8k16<T>(o[d8], a, b0, o[d8]);
        mma_m16n8k16<T>(o[d8 + 1], a, b1, o[d8 + 1]);
      }
    }
  }
  cp_async_wait<0>();  // the empty group of the last step (or Q's when the row visits no tile)

  // O /= l; rows without a kept key: O = 0, LSE = -inf.
  float* oBase = p.o + b * p.oBatchStride + h * p.oHeadStride;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = lRow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    int c = kept[r];
    c += __shfl_xor_sync(0xffffffffu, c, 1);
    c += __shfl_xor_sync(0xffffffffu, c, 2);
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
      const long long rowIndex = (static_cast<long long>(b) * p.heads + h) * p.seqQ + row;
      if (p.lse != nullptr && t == 0) p.lse[rowIndex] = empty ? -INFINITY : mRow[r] * fwd::kLn2 + logf(l);
      if (p.keptCounts != nullptr && t == 0) p.keptCounts[rowIndex] = c;
    }
  }
}

// Host side: the launch of one instantiation and the one dispatch point where runtime options
// become template arguments (element type, causal, exp flavour). Each head-dim unit
// (forward_hdim<D>.cu) instantiates run<ForwardTraits<D>>; forward.cu validates and picks the unit.
namespace fwd {

template <typename Traits, MmaType T, bool Causal, int PolyDegree>
cudaError_t launch(const ForwardParams& params, cudaStream_t stream) {
  auto kernel = &attention_forward_kernel<Traits, T, Causal, PolyDegree>;
  const int smem = Traits::kSmemBytes;
  cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid((params.seqQ + Traits::kBlockM - 1) / Traits::kBlockM, params.heads, params.batch);
  PSA_LAUNCH(kernel, grid, dim3(Traits::kThreads), smem, stream)(params);
  return cudaGetLastError();
}

template <typename Traits, MmaType T, bool Causal>
cudaError_t dispatch_exp(const ForwardParams& params, cudaStream_t stream) {
  if (params.polyDegree == 0) return launch<Traits, T, Causal, 0>(params, stream);
  if (params.polyDegree == 3) return launch<Traits, T, Causal, 3>(params, stream);  // the default degree, unrolled exactly
  return launch<Traits, T, Causal, 8>(params, stream);                              // other degrees: zero-padded to 8
}

template <typename Traits, MmaType T>
cudaError_t dispatch_causal(const ForwardParams& params, cudaStream_t stream) {
  return params.causal ? dispatch_exp<Traits, T, true>(params, stream) : dispatch_exp<Traits, T, false>(params, stream);
}

template <typename Traits>
cudaError_t run(const ForwardParams& params, MmaType type, cudaStream_t stream) {
  return type == MmaType::BF16 ? dispatch_causal<Traits, MmaType::BF16>(params, stream) : dispatch_causal<Traits, MmaType::F16>(params, stream);
}

}  // namespace fwd

}  // namespace psa::gpu
