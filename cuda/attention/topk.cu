// Host launcher of the top-k threshold kernel: the one dispatch point where runtime options
// become template arguments (head dim padded to 64/128/256, element type, causal).
#include "topk.h"

#include <cmath>

#include "topk_kernel.cuh"
#include "topk_traits.h"

namespace psa::gpu {
namespace {

template <typename Traits, MmaType T, bool Causal>
cudaError_t launch(const ForwardParams& params, const TopkArgs& args, cudaStream_t stream) {
  auto kernel = &attention_topk_kernel<Traits, T, Causal>;
  const int smem = Traits::kSmemBytes;
  cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid((params.seqQ + Traits::kBlockM - 1) / Traits::kBlockM, params.heads, params.batch);
  PSA_LAUNCH(kernel, grid, dim3(Traits::kThreads), smem, stream)(params, args);
  return cudaGetLastError();
}

template <typename Traits, MmaType T>
cudaError_t dispatch_causal(const ForwardParams& params, const TopkArgs& args, cudaStream_t stream) {
  return params.causal ? launch<Traits, T, true>(params, args, stream) : launch<Traits, T, false>(params, args, stream);
}

template <typename Traits>
cudaError_t dispatch_type(const ForwardParams& params, MmaType type, const TopkArgs& args, cudaStream_t stream) {
  return type == MmaType::BF16 ? dispatch_causal<Traits, MmaType::BF16>(params, args, stream) : dispatch_causal<Traits, MmaType::F16>(params, args, stream);
}

}  // namespace

int attention_topk_smem_bytes(int headDim) {
  if (headDim >= 1 && headDim <= 64) return TopkTraits<64>::kSmemBytes;
  if (headDim > 64 && headDim <= 128) return TopkTraits<128>::kSmemBytes;
  if (headDim > 128 && headDim <= 256) return TopkTraits<256>::kSmemBytes;
  return 0;
}

cudaError_t attention_topk_thresholds(const ForwardParams& in, MmaType type, int topK, double topKRatio, float* thresholds, cudaStream_t stream) {
  if (in.batch < 0 || in.heads <= 0 || in.kvHeads <= 0 || in.heads % in.kvHeads != 0 || in.seqQ < 0 || in.seqK < 0) return cudaErrorInvalidValue;
  if (in.heads > 65535 || in.batch > 65535) return cudaErrorInvalidValue;
  if (in.headDim < 1 || in.headDim > 256 || in.blockSize <= 0 || in.blockSize % TopkTraits<64>::kBlockN != 0) return cudaErrorInvalidValue;
  if (topK <= 0 && !(topKRatio > 0.0 && topKRatio <= 1.0)) return cudaErrorInvalidValue;
  if (in.batch == 0 || in.seqQ == 0) return cudaSuccess;
  if (!in.q || !thresholds || (in.seqK > 0 && !in.k)) return cudaErrorInvalidValue;
  if (in.layoutOffsets && (!in.layoutIndices || !in.layoutFlags)) return cudaErrorInvalidValue;
  TopkArgs args;
  args.topK = topK > 0 ? topK : 0;
  args.ratio = topK > 0 ? 0.0 : topKRatio;
  args.thresholds = thresholds;
  if (in.headDim <= 64) return dispatch_type<TopkTraits<64>>(in, type, args, stream);
  if (in.headDim <= 128) return dispatch_type<TopkTraits<128>>(in, type, args, stream);
  return dispatch_type<TopkTraits<256>>(in, type, args, stream);
}

}  // namespace psa::gpu
