// Host launcher of the fused sparse attention forward kernel: the one dispatch point where
// runtime options become template arguments (head dim, element type, causal, exp flavour).
#include "forward.h"

#include "forward_kernel.cuh"
#include "forward_traits.h"

namespace psa::gpu {
namespace {

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
  return launch<Traits, T, Causal, 8>(params, stream);  // other degrees: zero-padded to 8
}

template <typename Traits, MmaType T>
cudaError_t dispatch_causal(const ForwardParams& params, cudaStream_t stream) {
  return params.causal ? dispatch_exp<Traits, T, true>(params, stream) : dispatch_exp<Traits, T, false>(params, stream);
}

template <typename Traits>
cudaError_t dispatch_type(const ForwardParams& params, MmaType type, cudaStream_t stream) {
  return type == MmaType::BF16 ? dispatch_causal<Traits, MmaType::BF16>(params, stream) : dispatch_causal<Traits, MmaType::F16>(params, stream);
}

}  // namespace

int attention_forward_smem_bytes(int headDim) {
  if (headDim >= 1 && headDim <= 64) return ForwardTraits<64>::kSmemBytes;
  if (headDim > 64 && headDim <= 128) return ForwardTraits<128>::kSmemBytes;
  return 0;
}

cudaError_t attention_forward(const ForwardParams& in, MmaType type, cudaStream_t stream) {
  if (in.batch < 0 || in.heads <= 0 || in.kvHeads <= 0 || in.heads % in.kvHeads != 0 || in.seqQ < 0 || in.seqK < 0) return cudaErrorInvalidValue;
  if (in.headDim < 1 || in.headDim > 128 || in.blockSize != ForwardTraits<64>::kBlockN) return cudaErrorInvalidValue;
  if (in.polyDegree < 0 || in.polyDegree > 8) return cudaErrorInvalidValue;
  if (in.batch == 0 || in.seqQ == 0) return cudaSuccess;
  if (!in.q || !in.o || (in.seqK > 0 && (!in.k || !in.v))) return cudaErrorInvalidValue;
  if (in.layoutOffsets && (!in.layoutIndices || !in.layoutFlags)) return cudaErrorInvalidValue;
  ForwardParams params = in;
  // Coefficients above the degree are zero: the unrolled Horner of degree 8 then equals the
  // Horner of the true degree exactly (0 * f + 0 = 0, then 0 * f + c = c).
  for (int i = params.polyDegree + 1; i < 9; ++i) params.polyCoefficients[i] = 0.0f;
  if (params.headDim <= 64) return dispatch_type<ForwardTraits<64>>(params, type, stream);
  return dispatch_type<ForwardTraits<128>>(params, type, stream);
}

}  // namespace psa::gpu
