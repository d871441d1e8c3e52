// The CPU model's own check, and a template for the attention kernels: C = A * B for 16-bit
// A (M x K, row-major) and B (either N x K row-major, "nt", or K x N row-major, "nn"), f32 out,
// on Tensor Cores. A 64x64 output tile per block of 4 warps (16 rows each); K in steps of 64,
// double-buffered with cp.async; ldmatrix (.trans for "nn" B); mma.sync m16n8k16.
// M, N and K must be multiples of 64 (the launcher checks).
#include "../cuda_compat.h"
#include "../primitives.cuh"
#include "mma_matmul.h"
#include "mma_matmul_traits.h"

namespace psa::gpu {
namespace {

using namespace mma_check;

// Copy a 64x64 tile of 16-bit values (rows of `ld` halves apart) into shared memory, 16 bytes per cp.async.
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const std::uint16_t* src, int ld) {
  for (int c = threadIdx.x; c < kTile * kTile / 8; c += kThreads) {
    const int row = c / 8;
    const int col = (c % 8) * 8;
    cp_async_16(dst + row * kStride + col, src + static_cast<long>(row) * ld + col);
  }
}

template <MmaType T, bool BTransposed>
__global__ void __launch_bounds__(kThreads) mma_matmul_kernel(const std::uint16_t* a, const std::uint16_t* b, float* c, int M, int N, int K) {
  PSA_DYNAMIC_SHARED(std::uint16_t, smem);
  // Stage s of A at smem + s * kTileHalves, of B two tiles further. Computed, not held in an
  // array of pointers: a runtime-indexed local array would live in local memory.
  auto sa = [&](int stage) { return smem + stage * kTileHalves; };
  auto sb = [&](int stage) { return smem + (2 + stage) * kTileHalves; };
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int m0 = blockIdx.y * kTile;
  const int n0 = blockIdx.x * kTile;
  // B tile origin for k step kk: rows n (nt) or rows k (nn).
  auto b_tile = [&](int kk) { return BTransposed ? b + static_cast<long>(kk) * N + n0 : b + static_cast<long>(n0) * K + kk; };

  float acc[8][4] = {};
  load_tile(sa(0), a + static_cast<long>(m0) * K, K);
  load_tile(sb(0), b_tile(0), BTransposed ? N : K);
  cp_async_commit();
  const int steps = K / kTile;
  for (int s = 0; s < steps; s++) {
    const int cur = s & 1;
    if (s + 1 < steps) {  // prefetch the next K step while this one computes
      load_tile(sa(cur ^ 1), a + static_cast<long>(m0) * K + (s + 1) * kTile, K);
      load_tile(sb(cur ^ 1), b_tile((s + 1) * kTile), BTransposed ? N : K);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    for (int k16 = 0; k16 < kTile; k16 += 16) {
      std::uint32_t af[4];
      const int mat = lane / 8;
      const int r = lane % 8;
      ldmatrix<4, false>(af, sa(cur) + (warp * 16 + r + 8 * (mat & 1)) * kStride + k16 + 8 * (mat >> 1));
      for (int n8 = 0; n8 < 8; n8++) {
        std::uint32_t bf[2];
        const int bm = (lane / 8) & 1;  // lanes 0-7: k 0..7, lanes 8-15: k 8..15 (16-31 mirror them)
        if (BTransposed) {
          ldmatrix<2, true>(bf, sb(cur) + (k16 + 8 * bm + r) * kStride + n8 * 8);
        } else {
          ldmatrix<2, false>(bf, sb(cur) + (n8 * 8 + r) * kStride + k16 + 8 * bm);
        }
        mma_m16n8k16<T>(acc[n8], af, bf, acc[n8]);
      }
    }
    __syncthreads();  // everyone is done with `cur` before it is refilled
  }
  cp_async_wait<0>();
  const int g = lane >> 2;
  const int t = lane & 3;
  for (int n8 = 0; n8 < 8; n8++) {
    for (int i = 0; i < 4; i++) {
      const int row = m0 + warp * 16 + g + 8 * (i >> 1);
      const int col = n0 + n8 * 8 + 2 * t + (i & 1);
      c[static_cast<long>(row) * N + col] = acc[n8][i];
    }
  }
}

template <MmaType T, bool BTransposed>
cudaError_t launch(const std::uint16_t* a, const std::uint16_t* b, float* c, int M, int N, int K, cudaStream_t stream) {
  const int smem = kSmemBytes;
  cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(&mma_matmul_kernel<T, BTransposed>), cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  PSA_LAUNCH((mma_matmul_kernel<T, BTransposed>), dim3(N / kTile, M / kTile), dim3(kThreads), smem, stream)(a, b, c, M, N, K);
  return cudaGetLastError();
}

}  // namespace

cudaError_t mma_matmul(MmaType type, bool b_transposed, const std::uint16_t* a, const std::uint16_t* b, float* c, int M, int N, int K,
                       cudaStream_t stream) {
  if (M <= 0 || N <= 0 || K <= 0 || M % kTile || N % kTile || K % kTile) return cudaErrorInvalidValue;
  if (type == MmaType::BF16) return b_transposed ? launch<MmaType::BF16, true>(a, b, c, M, N, K, stream) : launch<MmaType::BF16, false>(a, b, c, M, N, K, stream);
  return b_transposed ? launch<MmaType::F16, true>(a, b, c, M, N, K, stream) : launch<MmaType::F16, false>(a, b, c, M, N, K, stream);
}

}  // namespace psa::gpu
