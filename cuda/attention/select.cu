// Host launchers of block selection: validation, the workspace layout, and the launch order
// pool -> rank -> rows (count) -> scan for phase 1, rows (fill) for phase 2.
#include "select.h"

#include <cmath>

#include "select_kernel.cuh"

namespace psa::gpu {
namespace {

using namespace blocksel;

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Where each array lives in the workspace, and the sizes the launches need.
struct Plan {
  long long rows = 0;
  int numQB = 0, numKB = 0, words = 0, group = 1, capacity = 0;
  bool selecting = false;  // mode != None and there is something to select from
  std::size_t qMean = 0, kMean = 0, kMin = 0, kMax = 0, kVar = 0, chosen = 0, bytes = 0;
};

bool valid(const SelectParams& p) {
  if (p.shape.batch < 0 || p.shape.seqQ < 0 || p.shape.seqK < 0 || p.shape.heads < 1 || p.shape.kvHeads < 1 || p.shape.heads % p.shape.kvHeads != 0) return false;
  if (p.shape.batch > 65535 || p.shape.heads > 65535) return false;
  if (p.blockSize < 16 || p.blockSize > 256 || p.blockSize % 16 != 0) return false;
  const bool noWindow = p.mask.windowLeft == -1 && p.mask.windowRight == -1;
  if (!noWindow && (p.mask.windowLeft < 0 || p.mask.windowRight < 0)) return false;
  if (p.mask.globalTokens < 0) return false;
  const int mode = static_cast<int>(p.mode);
  if (mode < 0 || mode > 3) return false;
  if (p.boundEstimate && p.momentEstimate) return false;
  if (p.mode != SelectMode::None) {
    if (p.shape.headDim < 1 || p.shape.headDim > 256) return false;
    if (!std::isfinite(p.value) || p.value < 0) return false;
    if (p.minBlocks < 0 || p.maxBlocks < 0) return false;
    if ((p.shape.seqK + p.blockSize - 1) / p.blockSize > kSelectMaxKeyBlocks) return false;
  }
  const long long numQB = (p.shape.seqQ + p.blockSize - 1) / p.blockSize;
  const long long numKB = (p.shape.seqK + p.blockSize - 1) / p.blockSize;
  const long long rows = static_cast<long long>(p.shape.batch) * p.shape.heads * numQB;
  // Both factors are below 2^31, so the product fits a long long.
  return rows * numKB <= INT32_MAX && rows < INT32_MAX;
}

Plan plan_of(const SelectParams& p) {
  Plan s;
  s.numQB = (p.shape.seqQ + p.blockSize - 1) / p.blockSize;
  s.numKB = (p.shape.seqK + p.blockSize - 1) / p.blockSize;
  s.rows = static_cast<long long>(p.shape.batch) * p.shape.heads * s.numQB;
  s.group = p.shape.heads / p.shape.kvHeads;
  s.selecting = p.mode != SelectMode::None && s.rows > 0 && s.numKB > 0;
  if (!s.selecting) return s;
  s.words = (s.numKB + 31) / 32;
  s.capacity = 32;
  while (s.capacity < s.numKB) s.capacity <<= 1;
  const std::size_t D = static_cast<std::size_t>(p.shape.headDim);
  const std::size_t kBlocks = static_cast<std::size_t>(p.shape.batch) * p.shape.kvHeads * s.numKB * D;
  std::size_t at = 0;
  s.qMean = at;
  at = align_up(at + static_cast<std::size_t>(s.rows) * D * sizeof(float));
  s.kMean = at;
  at = align_up(at + kBlocks * sizeof(float));
  if (p.boundEstimate) {
    s.kMin = at;
    at = align_up(at + kBlocks * sizeof(float));
    s.kMax = at;
    at = align_up(at + kBlocks * sizeof(float));
  }
  if (p.momentEstimate) {
    s.kVar = at;
    at = align_up(at + kBlocks * sizeof(float));
  }
  s.chosen = at;
  at = align_up(at + static_cast<std::size_t>(s.rows) * s.words * sizeof(std::uint32_t));
  s.bytes = at;
  return s;
}

template <MmaType T>
cudaError_t pool(const SelectParams& p, const Plan& s, unsigned char* ws, cudaStream_t stream) {
  float* qMean = reinterpret_cast<float*>(ws + s.qMean);
  float* kMean = reinterpret_cast<float*>(ws + s.kMean);
  float* kMin = p.boundEstimate ? reinterpret_cast<float*>(ws + s.kMin) : nullptr;
  float* kMax = p.boundEstimate ? reinterpret_cast<float*>(ws + s.kMax) : nullptr;
  float* kVar = p.momentEstimate ? reinterpret_cast<float*>(ws + s.kVar) : nullptr;
  PSA_LAUNCH(select_pool_kernel<T>, dim3(s.numQB, p.shape.heads, p.shape.batch), dim3(kPoolThreads), 0, stream)
  (p.q, p.qStrides, p.shape.seqQ, s.numQB, p.shape.heads, p.shape.headDim, p.blockSize, qMean, nullptr, nullptr, nullptr);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  PSA_LAUNCH(select_pool_kernel<T>, dim3(s.numKB, p.shape.kvHeads, p.shape.batch), dim3(kPoolThreads), 0, stream)
  (p.k, p.kStrides, p.shape.seqK, s.numKB, p.shape.kvHeads, p.shape.headDim, p.blockSize, kMean, kMin, kMax, kVar);
  return cudaGetLastError();
}

template <BlockEstimate E>
cudaError_t rank(const SelectParams& p, const Plan& s, unsigned char* ws, cudaStream_t stream) {
  RankArgs a;
  a.qMean = reinterpret_cast<const float*>(ws + s.qMean);
  a.kMean = reinterpret_cast<const float*>(ws + s.kMean);
  a.kMin = E == BlockEstimate::Bound ? reinterpret_cast<const float*>(ws + s.kMin) : nullptr;
  a.kMax = E == BlockEstimate::Bound ? reinterpret_cast<const float*>(ws + s.kMax) : nullptr;
  a.kVar = E == BlockEstimate::Moment ? reinterpret_cast<const float*>(ws + s.kVar) : nullptr;
  a.chosen = reinterpret_cast<std::uint32_t*>(ws + s.chosen);
  a.words = s.words;
  a.numQB = s.numQB;
  a.numKB = s.numKB;
  a.group = s.group;
  a.capacity = s.capacity;
  const int smem = rank_smem_bytes(s.capacity, p.mode == SelectMode::Progressive);  // at most kRankMaxSmemBytes
  auto kernel = &select_rank_kernel<E>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
  }
  const int ys = p.shareAcrossGroup ? p.shape.kvHeads : p.shape.heads;
  PSA_LAUNCH(select_rank_kernel<E>, dim3(s.numQB, ys, p.shape.batch), dim3(kRankThreads), smem, stream)(p, a);
  return cudaGetLastError();
}

unsigned row_grid(long long rows) { return static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps); }

}  // namespace

std::size_t select_workspace_bytes(const SelectParams& params) {
  if (!valid(params)) return 0;
  return plan_of(params).bytes;
}

cudaError_t select_blocks_count(const SelectParams& p, MmaType type, void* workspace, std::int32_t* offsets, cudaStream_t stream) {
  if (!valid(p) || !offsets) return cudaErrorInvalidValue;
  const Plan s = plan_of(p);
  if (s.rows == 0) return cudaMemsetAsync(offsets, 0, sizeof(std::int32_t), stream);
  if (s.selecting && (!workspace || !p.q || !p.k)) return cudaErrorInvalidValue;
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  cudaError_t err = cudaSuccess;
  if (s.selecting) {
    err = type == MmaType::BF16 ? pool<MmaType::BF16>(p, s, ws, stream) : pool<MmaType::F16>(p, s, ws, stream);
    if (err != cudaSuccess) return err;
    err = p.boundEstimate ? rank<BlockEstimate::Bound>(p, s, ws, stream)
          : p.momentEstimate ? rank<BlockEstimate::Moment>(p, s, ws, stream)
                             : rank<BlockEstimate::Mean>(p, s, ws, stream);
    if (err != cudaSuccess) return err;
  }
  const std::uint32_t* chosen = s.selecting ? reinterpret_cast<const std::uint32_t*>(ws + s.chosen) : nullptr;
  PSA_LAUNCH(select_rows_kernel<false>, dim3(row_grid(s.rows)), dim3(kRowThreads), 0, stream)
  (p, chosen, s.words, s.rows, s.numQB, s.numKB, offsets, nullptr, nullptr, nullptr);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  PSA_LAUNCH(select_scan_kernel<kScanThreads>, dim3(1), dim3(kScanThreads), 0, stream)(offsets, s.rows);
  return cudaGetLastError();
}

cudaError_t select_blocks_fill(const SelectParams& p, const void* workspace, const std::int32_t* offsets, std::int32_t* indices,
                               std::uint8_t* flags, cudaStream_t stream) {
  if (!valid(p) || !offsets) return cudaErrorInvalidValue;
  const Plan s = plan_of(p);
  if (s.rows == 0) return cudaSuccess;
  if (s.selecting && !workspace) return cudaErrorInvalidValue;
  const std::uint32_t* chosen = s.selecting ? reinterpret_cast<const std::uint32_t*>(static_cast<const unsigned char*>(workspace) + s.chosen) : nullptr;
  PSA_LAUNCH(select_rows_kernel<true>, dim3(row_grid(s.rows)), dim3(kRowThreads), 0, stream)
  (p, chosen, s.words, s.rows, s.numQB, s.numKB, nullptr, offsets, indices, flags);
  return cudaGetLastError();
}

}  // namespace psa::gpu
