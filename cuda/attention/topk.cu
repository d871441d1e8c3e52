// Host launcher of the top-k threshold kernel: the one dispatch point where runtime options
// become template arguments (head dim padded to 64/128/256, element type, causal).
#include "topk.h"

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
  const dim3 grid((params.shape.seqQ + Traits::kBlockM - 1) / Traits::kBlockM, params.shape.heads, params.shape.batch);
  PSA_LAUNCH((attention_topk_kernel<Traits, T, Causal>), grid, dim3(Traits::kThreads), smem, stream)(params, args);
  return cudaGetLastError();
}

template <typename Traits, MmaType T>
cudaError_t dispatch_causal(const ForwardParams& params, const TopkArgs& args, cudaStream_t stream) {
  return params.mask.causal ? launch<Traits, T, true>(params, args, stream) : launch<Traits, T, false>(params, args, stream);
}

template <typename Traits>
cudaError_t dispatch_type(const ForwardParams& params, MmaType type, const TopkArgs& args, cudaStream_t stream) {
  return type == MmaType::BF16 ? dispatch_causal<Traits, MmaType::BF16>(params, args, stream) : dispatch_causal<Traits, MmaType::F16>(params, args, stream);
}

}  // namespace

int attention_topk_smem_bytes(int headDim) {
  switch (padded_head_dim(headDim)) {
    case 64: return TopkTraits<64>::kSmemBytes;
    case 128: return TopkTraits<128>::kSmemBytes;
    case 256: return TopkTraits<256>::kSmemBytes;
    default: return 0;
  }
}

cudaError_t attention_topk_thresholds(const ForwardParams& in, MmaType type, int topK, double topKRatio, float* thresholds, cudaStream_t stream) {
  const Shape& s = in.shape;
  if (s.batch < 0 || s.heads <= 0 || s.kvHeads <= 0 || s.heads % s.kvHeads != 0 || s.seqQ < 0 || s.seqK < 0) return cudaErrorInvalidValue;
  if (s.heads > 65535 || s.batch > 65535) return cudaErrorInvalidValue;
  if (padded_head_dim(s.headDim) == 0 || in.blockSize <= 0 || in.blockSize % kLayoutKeyUnit != 0) return cudaErrorInvalidValue;
  if (topK <= 0 && !(topKRatio > 0.0 && topKRatio <= 1.0)) return cudaErrorInvalidValue;
  if (s.batch == 0 || s.seqQ == 0) return cudaSuccess;
  if (!in.q || !thresholds || (s.seqK > 0 && !in.k)) return cudaErrorInvalidValue;
  if (in.layoutOffsets && (!in.layoutIndices || !in.layoutFlags)) return cudaErrorInvalidValue;
  TopkArgs args;
  args.topK = topK > 0 ? topK : 0;
  args.ratio = topK > 0 ? 0.0 : topKRatio;
  args.thresholds = thresholds;
  switch (padded_head_dim(s.headDim)) {
    case 64: return dispatch_type<TopkTraits<64>>(in, type, args, stream);
    case 128: return dispatch_type<TopkTraits<128>>(in, type, args, stream);
    default: return dispatch_type<TopkTraits<256>>(in, type, args, stream);
  }
}

}  // namespace psa::gpu
