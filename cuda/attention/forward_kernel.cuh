// The fused sparse attention forward kernel, FlashAttention-2 style, on Tensor Cores.
//
// One CTA per (query tile, query head h, batch b), causal grids longest tile first: 4 warps of
// 16 rows each (64-row tiles), or of 32 rows as two m16 slices that share every K and V fragment
// (128-row tiles, ForwardTraits). It visits the kBlockN-key tiles of key_tiles.cuh (64 keys, 32 at d 256;
// the layout's entries for the tile's query block, or every causally reachable tile), one at a time:
//   Q tile   global -> shared (cp.async); up to d 128 its A fragments go to registers
//            (ldmatrix.x4) once and its shared tile is reused as the V buffer; at d 256 Q stays
//            in shared memory and each k16 step reloads its fragment (ForwardTraits::kQInRegisters);
//   K, V     global -> shared (cp.async), one buffer each (FlashAttention 2's pipeline): step n
//            issues V_n before S = Q K_n^T and, once every warp is done with K_n, K_{n+1}, which
//            then lands during the softmax and P V of step n;
//   S = Q K^T    scores.cuh, the top-k kernel's scores bit for bit; a warp skips a causal tile
//            that starts past its own last row, or every tile when its rows are all past seqQ
//            (every score masked or discarded: a no-op), and its P V;
//   mask     element_mask.cuh per element, only for tiles that need it, and, when given, the
//            per-row top-k threshold (score >= tau); full tiles take a body without either;
//   softmax  online, in log2 units (x = s * scale * log2 e), row max over the 4 lanes of a row
//            with __shfl_xor_sync, a row max of -inf guarded against NaN; ex2.approx.ftz, or
//            exp2_poly.cuh; on full tiles the scale folds into one FMA (fwd::softmax_tile);
//   O += P V  P rounded to 16 bits in registers: the accumulators of two adjacent 8-key S tiles
//            are exactly one A fragment of the m16n8k16 product; V as B via ldmatrix.x4.trans;
//   end      O /= l, O = 0 and LSE = -inf for rows without a kept key, LSE = m + ln l, and the
//            per-row count of kept keys when asked; O by 8-byte column pairs where aligned,
//            else through shared memory as consecutive floats of each row.
// Contract: docs/contract.md#softmax-and-outputs. Tile shapes: forward_traits.h. Parameters: params.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "element_mask.cuh"
#include "exp2_poly.cuh"
#include "forward_traits.h"
#include "key_tiles.cuh"
#include "params.h"
#include "scores.cuh"
#include "tile_load.cuh"

namespace psa::gpu {
namespace fwd {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

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

// E(x) for x = s - m in log2 units (x <= 0); a masked score (-inf) gives exactly 0.
template <int PolyDegree>
__device__ __forceinline__ float softmax_exp2(float x, const float (&c)[9]) {
  if constexpr (PolyDegree == 0) {
    return ex2(x);  // 2^-inf = 0
  } else {
    return x == -INFINITY ? 0.0f : exp2_poly<PolyDegree>(x, c);
  }
}

// One key tile's scores to probabilities in place, with the online softmax of the lane's two
// rows (running max mRow in log2 units, running sum lRow, O rescaled by the max's change; the 4
// lanes of a row share its max through __shfl_xor_sync, a max of -inf is guarded against NaN).
// Full: s holds the raw accumulators of a tile where every score is kept; the max comes from
// the raw extremes (exact: rounding is monotone) and the scale folds into the exponent's FMA.
// Else: s holds scores in log2 units, -inf where dropped.
template <bool Full, int PolyDegree, int STiles, int OTiles>
__device__ __forceinline__ void softmax_tile(float (&s)[STiles][4], float (&o)[OTiles][4], float (&mRow)[2], float (&lRow)[2], float scaleLog2,
                                             const float (&coef)[9]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = mRow[r];
    if constexpr (Full) {
      float hi = s[0][2 * r], lo = s[0][2 * r];
#pragma unroll
      for (int n8 = 0; n8 < STiles; ++n8) {
        hi = fmaxf(hi, fmaxf(s[n8][2 * r], s[n8][2 * r + 1]));
        lo = fminf(lo, fminf(s[n8][2 * r], s[n8][2 * r + 1]));
      }
      mx = fmaxf(mx, (scaleLog2 >= 0.0f ? hi : lo) * scaleLog2);
    } else {
#pragma unroll
      for (int n8 = 0; n8 < STiles; ++n8) mx = fmaxf(mx, fmaxf(s[n8][2 * r], s[n8][2 * r + 1]));
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float ms = mx == -INFINITY ? 0.0f : mx;  // no kept key yet: keep exp2(-inf - 0) = 0, not NaN
    const float corr = ex2(mRow[r] - ms);
    mRow[r] = mx;
    float sum = 0.0f;
#pragma unroll
    for (int n8 = 0; n8 < STiles; ++n8) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float pv;
        if constexpr (Full) {
          // Finite scores only: neither exponential needs the -inf test of softmax_exp2.
          const float x = fmaf(s[n8][2 * r + e], scaleLog2, -ms);
          if constexpr (PolyDegree == 0) {
            pv = ex2(x);
          } else {
            pv = exp2_poly<PolyDegree>(x, coef);
          }
        } else {
          pv = softmax_exp2<PolyDegree>(s[n8][2 * r + e] - ms, coef);
        }
        s[n8][2 * r + e] = pv;
        sum += pv;
      }
    }
    lRow[r] = lRow[r] * corr + sum;
#pragma unroll
    for (int d8 = 0; d8 < OTiles; ++d8) {
      o[d8][2 * r] *= corr;
      o[d8][2 * r + 1] *= corr;
    }
  }
}

}  // namespace fwd

// Min blocks 1: ptxas may then use every register a thread can have (without it, it held the d 64
// generic-degree kernels to 128 and spilled); occupancy is the gate's to check.
template <typename Traits, MmaType T, bool Causal, int PolyDegree>
__global__ void __launch_bounds__(Traits::kThreads, 1) attention_forward_kernel(const ForwardParams p) {
  using Tr = Traits;
  constexpr int kN = Tr::kBlockN;
  constexpr int kStride = Tr::kStride;
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  std::uint16_t* const sQ = smem + Tr::kQOffset;
  std::uint16_t* const sK = smem + Tr::kKOffset;
  std::uint16_t* const sV = smem + Tr::kVOffset;

  const Shape& sh = p.shape;
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2;   // fragment row group
  const int t = lane & 3;    // fragment column pair
  const int lm = lane >> 3;  // ldmatrix: matrix whose row address this lane gives
  const int lr = lane & 7;   //           and which row of it
  // Causal: the last query tiles visit the most key tiles, so they go first (blockIdx.x 0), and the
  // grid's tail is the shortest rows rather than the longest.
  const int qTile = Causal ? static_cast<int>(gridDim.x - 1 - blockIdx.x) : static_cast<int>(blockIdx.x);
  const int m0 = qTile * Tr::kBlockM;
  constexpr int kSl = Tr::kSlices;
  const int warpRow0 = warp * Tr::kRowsPerWarp;  // in the tile; slice sl holds rows warpRow0 + 16 sl ..
  // The warp's last row's position among the keys: causal key tiles past it hold no allowed key of its rows.
  // (in [-seqQ, seqK): an int, as are the tiles' first keys it is compared with)
  const int warpLastPos = (m0 + warpRow0 + Tr::kRowsPerWarp < sh.seqQ ? m0 + warpRow0 + Tr::kRowsPerWarp : sh.seqQ) - 1 + (sh.seqK - sh.seqQ);
  const int kvh = h / (sh.heads / sh.kvHeads);

  const std::uint16_t* qBase = p.q + offset_of(p.qStrides, b, h, 0);
  const std::uint16_t* kBase = p.k + offset_of(p.kStrides, b, kvh, 0);
  const std::uint16_t* vBase = p.v + offset_of(p.vStrides, b, kvh, 0);
  const bool vec = vector_rows(sh.headDim, p.qStrides, p.q) && vector_rows(sh.headDim, p.kStrides, p.k) && vector_rows(sh.headDim, p.vStrides, p.v);
  const KeyTileWalk<Tr, Causal> walk(p, b, h, m0);

  // One group: Q and the first K tile (K alone when the row visits none).
  load_tile<Tr>(sQ, qBase, p.qStrides.row, m0, sh.seqQ, sh.headDim, vec);
  if (walk.total > 0) load_tile<Tr, kN>(sK, kBase, p.kStrides.row, walk.tile(0) * kN, sh.seqK, sh.headDim, vec);
  cp_async_commit();

  // Q fragments in registers (d <= 128). The V buffer that aliases sQ is first written after the
  // barrier at the top of step 0, which every warp reaches only with its fragments loaded.
  QFragments<Tr, Tr::kQInRegisters> qf[kSl];
  if constexpr (Tr::kQInRegisters) {
    cp_async_wait<0>();
    __syncthreads();
  }
#pragma unroll
  for (int sl = 0; sl < kSl; ++sl) qf[sl].load_rows(sQ, warpRow0 + 16 * sl, lane);

  // The polynomial's coefficients stay in the kernel's parameter space: an FMA reads them there,
  // with no register held across the walk.
  const float(&coef)[9] = p.polyCoefficients;

  const bool topK = p.threshold != nullptr;
  // Per slice sl and lane row r (row warpRow0 + 16 sl + g + 8 r of the tile):
  float tau[kSl][2];
  float mRow[kSl][2];  // running max, log2 units
  float lRow[kSl][2];  // running sum of this lane's columns
  int kept[kSl][2];    // kept keys among this lane's columns
  float o[kSl][Tr::kOTiles][4];
#pragma unroll
  for (int sl = 0; sl < kSl; ++sl) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = m0 + warpRow0 + 16 * sl + g + 8 * r;
      tau[sl][r] = topK ? ld_if(row < sh.seqQ, p.threshold + (static_cast<long long>(b) * sh.heads + h) * sh.seqQ + row, -INFINITY) : -INFINITY;
      mRow[sl][r] = -INFINITY;
      lRow[sl][r] = 0.0f;
      kept[sl][r] = 0;
    }
#pragma unroll
    for (int d8 = 0; d8 < Tr::kOTiles; ++d8) o[sl][d8][0] = o[sl][d8][1] = o[sl][d8][2] = o[sl][d8][3] = 0.0f;
  }
  const float scaleLog2 = p.scale * fwd::kLog2e;

  for (int n = 0; n < walk.total; ++n) {
    const KeyTile tile = walk.at(n);
    cp_async_wait<0>();
    __syncthreads();  // K_n has landed for every thread; every warp is done with V_{n-1} (and Q, aliased on V)
    load_tile<Tr, kN>(sV, vBase, p.vStrides.row, tile.index * kN, sh.seqK, sh.headDim, vec);
    cp_async_commit();

    // A warp whose rows are all past seqQ, or past whose last row the causal tile starts, has no
    // allowed (row, key) here: it skips the tile's mma work (the barriers stay every thread's).
    const bool live = m0 + warpRow0 < sh.seqQ && (!Causal || tile.index * kN <= warpLastPos);
    float s[kSl][Tr::kSTiles][4];
    if (live) qk_scores<T>(s, qf, sK, 0, lane);

    cp_async_wait<0>();
    __syncthreads();  // V_n has landed for every thread; every warp is done with K_n
    if (n + 1 < walk.total) load_tile<Tr, kN>(sK, kBase, p.kStrides.row, walk.tile(n + 1) * kN, sh.seqK, sh.headDim, vec);
    cp_async_commit();
    if (!live) continue;

    // Full tiles (every (row, key) kept: no element mask, no top-k) take a loop body without any
    // per-element test; their kept count is the lane's columns.
    if (!tile.elementMask && !topK) {
#pragma unroll
      for (int sl = 0; sl < kSl; ++sl) {
        // One marked copy per slice, named by the step (the gate counts instructions per score).
        if constexpr (kN == 64) {
          PSA_PTX_REGION_BEGIN("full-tile-softmax");
        } else {
          PSA_PTX_REGION_BEGIN("full-32key-tile-softmax");
        }
        kept[sl][0] += 2 * Tr::kSTiles;
        kept[sl][1] += 2 * Tr::kSTiles;
        fwd::softmax_tile<true, PolyDegree>(s[sl], o[sl], mRow[sl], lRow[sl], scaleLog2, coef);
        if constexpr (kN == 64) {
          PSA_PTX_REGION_END("full-tile-softmax");
        } else {
          PSA_PTX_REGION_END("full-32key-tile-softmax");
        }
      }
    } else {
      // Scores to log2 units; dropped ones to -inf. Element i of tile n8: row g + 8 (i >> 1), key 2t + (i & 1).
#pragma unroll
      for (int sl = 0; sl < kSl; ++sl) {
#pragma unroll
        for (int n8 = 0; n8 < Tr::kSTiles; ++n8) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float raw = s[sl][n8][i];
            bool keep = true;
            if (tile.elementMask) {
              const int pos = m0 + warpRow0 + 16 * sl + g + 8 * (i >> 1) + (sh.seqK - sh.seqQ);  // below seqK + 128: an int, as key indices are
              keep = element_allowed(p.mask, Causal, sh.seqK, pos, tile.index * kN + n8 * 8 + 2 * t + (i & 1), tile.selected);
            }
            if (topK) keep = keep && score_of(raw, p.scale) >= tau[sl][i >> 1];
            kept[sl][i >> 1] += keep ? 1 : 0;
            s[sl][n8][i] = keep ? raw * scaleLog2 : -INFINITY;
          }
        }
        fwd::softmax_tile<false, PolyDegree>(s[sl], o[sl], mRow[sl], lRow[sl], scaleLog2, coef);
      }
    }

    // O += P V: two adjacent S tiles (keys 16kk..16kk+15) form the A fragment of step kk; each V
    // fragment serves every slice.
#pragma unroll
    for (int kk = 0; kk < Tr::kPV16; ++kk) {
      std::uint32_t a[kSl][4];
#pragma unroll
      for (int sl = 0; sl < kSl; ++sl) {
        a[sl][0] = fwd::pack2<T>(s[sl][2 * kk][0], s[sl][2 * kk][1]);
        a[sl][1] = fwd::pack2<T>(s[sl][2 * kk][2], s[sl][2 * kk][3]);
        a[sl][2] = fwd::pack2<T>(s[sl][2 * kk + 1][0], s[sl][2 * kk + 1][1]);
        a[sl][3] = fwd::pack2<T>(s[sl][2 * kk + 1][2], s[sl][2 * kk + 1][3]);
      }
#pragma unroll
      for (int d8 = 0; d8 < Tr::kOTiles; d8 += 2) {
        // Matrices (transposed): (keys lo, d8), (keys hi, d8), (keys lo, d8+1), (keys hi, d8+1).
        std::uint32_t vf[4];
        ldmatrix<4, true>(vf, sV + (kk * 16 + 8 * (lm & 1) + lr) * kStride + (d8 + (lm >> 1)) * 8);
        const std::uint32_t b0[2] = {vf[0], vf[1]};
        const std::uint32_t b1[2] = {vf[2], vf[3]};
#pragma unroll
        for (int sl = 0; sl < kSl; ++sl) {
          mma_m16n8k16<T>(o[sl][d8], a[sl], b0, o[sl][d8]);
          mma_m16n8k16<T>(o[sl][d8 + 1], a[sl], b1, o[sl][d8 + 1]);
        }
      }
    }
  }
  cp_async_wait<0>();  // the empty group of the last step (or Q's when the row visits no tile)

  // O /= l; rows without a kept key: O = 0, LSE = -inf.
  float* oBase = p.o + offset_of(p.oStrides, b, h, 0);
  // 8-byte aligned column pairs: even strides (so an even head dim: one of them is the head dim)
  // and an 8-byte aligned output. Else (odd head dims) the tile goes through shared memory, so
  // that consecutive threads store consecutive floats of each row (whole sectors) instead of
  // every other float of 8 rows.
  const bool pairs = (p.oStrides.row | p.oStrides.head | p.oStrides.batch) % 2 == 0 && (reinterpret_cast<std::uintptr_t>(p.o) & 7) == 0;
  // Staged rows of kHeadDim + 8 floats: a warp's 8-byte writes of 8 rows then start 8 banks apart.
  // The warps stage in turns of as many as the buffers hold (all four but at d 128 with 128 rows).
  constexpr int kOStride = Tr::kHeadDim + 8;
  constexpr int kStageWarps = Tr::kSmemBytes / (Tr::kRowsPerWarp * kOStride * 4) < Tr::kWarps ? Tr::kSmemBytes / (Tr::kRowsPerWarp * kOStride * 4) : Tr::kWarps;
  static_assert(kStageWarps >= 1, "a warp's staged rows fit the K, V (and Q) buffers");
  float* const sO = reinterpret_cast<float*>(smem);
  const int stageTurn = warp / kStageWarps;
  const int stageRow0 = (warp % kStageWarps) * Tr::kRowsPerWarp;  // the warp's first row in sO
  if (!pairs) __syncthreads();  // every warp is done with the K, V and Q buffers sO reuses
#pragma unroll
  for (int rr = 0; rr < 2 * kSl; ++rr) {
    const int sl = rr >> 1, r = rr & 1;
    float l = lRow[sl][r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    int c = kept[sl][r];
    c += __shfl_xor_sync(0xffffffffu, c, 1);
    c += __shfl_xor_sync(0xffffffffu, c, 2);
    const bool empty = !(l > 0.0f);
    lRow[sl][r] = empty ? 0.0f : 1.0f / l;  // from here on: the row's 1 / l
    const int row = m0 + warpRow0 + 16 * sl + g + 8 * r;
    if (pairs) {
      // Columns 2t, 2t + 1 as one 8-byte store: a warp instruction writes whole sectors.
      float* const orow = oBase + static_cast<long long>(row) * p.oStrides.row;
#pragma unroll
      for (int d8 = 0; d8 < Tr::kOTiles; ++d8) {
        const int col = d8 * 8 + 2 * t;
        float2 v;
        v.x = o[sl][d8][2 * r] * lRow[sl][r];
        v.y = o[sl][d8][2 * r + 1] * lRow[sl][r];
        st_if(row < sh.seqQ && col < sh.headDim, reinterpret_cast<float2*>(orow + col), v);
      }
    }
    if (row < sh.seqQ) {
      const long long rowIndex = (static_cast<long long>(b) * sh.heads + h) * sh.seqQ + row;
      if (p.lse != nullptr) st_if(t == 0, p.lse + rowIndex, empty ? -INFINITY : mRow[sl][r] * fwd::kLn2 + logf(l));
      if (p.keptCounts != nullptr) st_if(t == 0, p.keptCounts + rowIndex, c);
    }
  }
  if (!pairs) {
#pragma unroll 1
    for (int turn = 0; turn * kStageWarps < Tr::kWarps; ++turn) {
      if (turn > 0) __syncthreads();  // the previous turn's rows have left sO
      if (stageTurn == turn) {
#pragma unroll
        for (int rr = 0; rr < 2 * kSl; ++rr) {
          const int sl = rr >> 1, r = rr & 1;
          float* const dst = sO + (stageRow0 + 16 * sl + g + 8 * r) * kOStride;
#pragma unroll
          for (int d8 = 0; d8 < Tr::kOTiles; ++d8) {
            float2 v;
            v.x = o[sl][d8][2 * r] * lRow[sl][r];
            v.y = o[sl][d8][2 * r + 1] * lRow[sl][r];
            st(reinterpret_cast<float2*>(dst + d8 * 8 + 2 * t), v);
          }
        }
      }
      __syncthreads();
      // The turn's rows of the tile, consecutive threads on consecutive floats of a row.
      const int first = m0 + turn * kStageWarps * Tr::kRowsPerWarp;
      const int span = kStageWarps * Tr::kRowsPerWarp;
      const int rows = sh.seqQ - first < span ? sh.seqQ - first : span;
      const int n = rows > 0 ? rows * sh.headDim : 0;
#pragma unroll 1
      for (int e = static_cast<int>(threadIdx.x); e < n; e += Tr::kThreads) {
        const int r = e / sh.headDim, col = e - r * sh.headDim;
        st(oBase + static_cast<long long>(first + r) * p.oStrides.row + col, ld(sO + r * kOStride + col));
      }
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
  const dim3 grid((params.shape.seqQ + Traits::kBlockM - 1) / Traits::kBlockM, params.shape.heads, params.shape.batch);
  PSA_LAUNCH((attention_forward_kernel<Traits, T, Causal, PolyDegree>), grid, dim3(Traits::kThreads), smem, stream)(params);
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
  return params.mask.causal ? dispatch_exp<Traits, T, true>(params, stream) : dispatch_exp<Traits, T, false>(params, stream);
}

template <typename Traits>
cudaError_t run(const ForwardParams& params, MmaType type, cudaStream_t stream) {
  return type == MmaType::BF16 ? dispatch_causal<Traits, MmaType::BF16>(params, stream) : dispatch_causal<Traits, MmaType::F16>(params, stream);
}

}  // namespace fwd

}  // namespace psa::gpu
