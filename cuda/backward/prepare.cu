// The backward's pre-pass kernels (prepare.h), after the forward has been recomputed:
//   row_stats_kernel   delta_i = dO_i . O_i and the shift and 1 / Z of RowStats (backward_params.h);
//   transpose_kernel   the layout transposed once per call: for each (b, h, key block J), the
//                      entries of the forward's layout that name J, ascending by query block;
//                      each column's thread walks every query block's row by binary search, so
//                      the order (and the dK, dV sums) do not depend on scheduling;
//   scan_kernel        the transposed rows' offsets.
#include "prepare.h"

#include <cmath>

namespace psa::gpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 256;
unsigned grid_for(long long n) { return static_cast<unsigned>(n <= 0 ? 1 : (n + kThreads - 1) / kThreads < 4096 ? (n + kThreads - 1) / kThreads : 4096); }

// One warp per row [batch, heads, seqQ]: delta = dO . O in float32 (dO and O float32, the strides
// of q), and the row's shift and 1 / Z from its LSE (and, for the polynomial, its maximum).
__global__ void attention_backward_row_stats_kernel(const float* __restrict__ dO, const float* __restrict__ o, const float* __restrict__ lse,
                                                    const float* __restrict__ rowMax, Shape sh, Strides qs, RowStats* __restrict__ rows) {
  const long long nRows = static_cast<long long>(sh.batch) * sh.heads * sh.seqQ;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const long long warps = static_cast<long long>(gridDim.x) * (blockDim.x / 32);
  for (long long r = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < nRows; r += warps) {
    const long long i = r % sh.seqQ;
    const long long h = (r / sh.seqQ) % sh.heads;
    const long long b = r / (static_cast<long long>(sh.seqQ) * sh.heads);
    const long long at = offset_of(qs, b, h, i);
    float sum = 0.0f;
    for (int d = lane; d < sh.headDim; d += 32) sum = fmaf(dO[at + d], o[at + d], sum);
#pragma unroll
    for (int w = 16; w >= 1; w >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, w);
    if (lane == 0) {
      RowStats s{0.0f, 0.0f, 0.0f};
      if (lse[r] != -INFINITY) {
        const float lse2 = lse[r] * kLog2e;
        s.shift = rowMax ? rowMax[r] : lse2;
        s.invZ = rowMax ? exp2f(rowMax[r] - lse2) : 1.0f;
        s.delta = sum;
      }
      rows[r] = s;
    }
  }
}

// The entry of row `row` that names key block J, or -1 (a row's indices ascend).
__device__ __forceinline__ int find_entry(const std::int32_t* offsets, const std::int32_t* indices, long long row, int J) {
  int lo = offsets[row], hi = offsets[row + 1];
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (indices[mid] < J) lo = mid + 1;
    else hi = mid;
  }
  return lo < offsets[row + 1] && indices[lo] == J ? lo : -1;
}

// counts[c] for each column c = (b * heads + h) * keyBlocks + J; with `fill`, also writes the
// column's entries from tOffsets[c] on.
__global__ void attention_backward_transpose_kernel(const std::int32_t* __restrict__ offsets, const std::int32_t* __restrict__ indices, TransposeShape ts,
                                                    std::int32_t* __restrict__ counts, const std::int32_t* __restrict__ tOffsets,
                                                    std::int32_t* __restrict__ tQueryBlocks, std::int32_t* __restrict__ tEntries) {
  const long long columns = static_cast<long long>(ts.batchHeads) * ts.keyBlocks;
  for (long long c = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long bh = c / ts.keyBlocks;
    const int J = static_cast<int>(c % ts.keyBlocks);
    int n = 0;
    int out = tOffsets ? tOffsets[c] : 0;
    for (int I = 0; I < ts.queryBlocks; ++I) {
      const int e = find_entry(offsets, indices, bh * ts.queryBlocks + I, J);
      if (e < 0) continue;
      ++n;
      if (tOffsets) {
        tQueryBlocks[out] = I;
        tEntries[out] = e;
        ++out;
      }
    }
    if (counts) counts[c] = n;
  }
}

// Exclusive prefix sum of n counts into offsets[0..n] (offsets[n] = the total), one CTA of
// kScanThreads: each thread sums a contiguous chunk, the chunk sums are scanned in shared memory.
constexpr int kScanThreads = 1024;
__global__ void __launch_bounds__(kScanThreads) attention_backward_scan_kernel(const std::int32_t* __restrict__ counts, long long n, std::int32_t* __restrict__ offsets) {
  __shared__ std::int32_t sums[kScanThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const long long chunk = (n + kScanThreads - 1) / kScanThreads;
  const long long lo = tid * chunk < n ? tid * chunk : n;
  const long long hi = lo + chunk < n ? lo + chunk : n;
  std::int32_t s = 0;
  for (long long i = lo; i < hi; ++i) s += counts[i];
  sums[tid] = s;
  __syncthreads();
  for (int step = 1; step < kScanThreads; step <<= 1) {
    const std::int32_t add = tid >= step ? sums[tid - step] : 0;
    __syncthreads();
    sums[tid] += add;
    __syncthreads();
  }
  std::int32_t run = sums[tid] - s;  // exclusive
  for (long long i = lo; i < hi; ++i) {
    offsets[i] = run;
    run += counts[i];
  }
  if (tid == kScanThreads - 1) offsets[n] = sums[tid];
}

}  // namespace

cudaError_t backward_row_stats(const float* dO, const float* o, const float* lse, const float* rowMax, const Shape& shape, const Strides& qStrides, RowStats* rows,
                               cudaStream_t stream) {
  const long long n = static_cast<long long>(shape.batch) * shape.heads * shape.seqQ;
  PSA_LAUNCH(attention_backward_row_stats_kernel, grid_for(n * 32), kThreads, 0, stream)(dO, o, lse, rowMax, shape, qStrides, rows);
  return cudaGetLastError();
}

cudaError_t backward_transpose_layout(const std::int32_t* offsets, const std::int32_t* indices, TransposeShape ts, std::int32_t* counts, std::int32_t* tOffsets,
                                      std::int32_t* tQueryBlocks, std::int32_t* tEntries, cudaStream_t stream) {
  const long long columns = static_cast<long long>(ts.batchHeads) * ts.keyBlocks;
  PSA_LAUNCH(attention_backward_transpose_kernel, grid_for(columns), kThreads, 0, stream)(offsets, indices, ts, counts, nullptr, nullptr, nullptr);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  PSA_LAUNCH(attention_backward_scan_kernel, 1, kScanThreads, 0, stream)(counts, columns, tOffsets);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  PSA_LAUNCH(attention_backward_transpose_kernel, grid_for(columns), kThreads, 0, stream)(offsets, indices, ts, nullptr, tOffsets, tQueryBlocks, tEntries);
  return cudaGetLastError();
}

}  // namespace psa::gpu
