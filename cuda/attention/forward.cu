// Host launcher of the fused sparse attention forward kernel: validates the parameters and
// picks the head-dim unit (forward_hdim<D>.cu), whose dispatch turns the remaining runtime
// options into template arguments (forward_kernel.cuh, fwd::run).
#include "forward.h"

#include "forward_traits.h"

namespace psa::gpu {

int attention_forward_smem_bytes(int headDim) {
  if (headDim >= 1 && headDim <= 64) return ForwardTraits<64>::kSmemBytes;
  if (headDim > 64 && headDim <= 128) return ForwardTraits<128>::kSmemBytes;
  if (headDim > 128 && headDim <= 256) return ForwardTraits<256>::kSmemBytes;
  return 0;
}

cudaError_t attention_forward(const ForwardParams& in, MmaType type, cudaStream_t stream) {
  constexpr int kTile = ForwardTraits<64>::kBlockN;  // 64 keys, the same in every instantiation
  if (in.batch < 0 || in.heads <= 0 || in.kvHeads <= 0 || in.heads % in.kvHeads != 0 || in.seqQ < 0 || in.seqK < 0) return cudaErrorInvalidValue;
  if (in.heads > 65535 || in.batch > 65535) return cudaErrorInvalidValue;  // grid y and z
  if (in.headDim < 1 || in.headDim > 256) return cudaErrorInvalidValue;
  if (in.blockSize < kTile || in.blockSize > 4 * kTile || in.blockSize % kTile != 0) return cudaErrorInvalidValue;
  if (in.polyDegree < 0 || in.polyDegree > 8) return cudaErrorInvalidValue;
  if (in.batch == 0 || in.seqQ == 0) return cudaSuccess;
  if (!in.q || !in.o || (in.seqK > 0 && (!in.k || !in.v))) return cudaErrorInvalidValue;
  if (in.layoutOffsets && (!in.layoutIndices || !in.layoutFlags)) return cudaErrorInvalidValue;
  ForwardParams params = in;
  // Coefficients above the degree are zero: the unrolled Horner of degree 8 then equals the
  // Horner of the true degree exactly (0 * f + 0 = 0, then 0 * f + c = c).
  for (int i = params.polyDegree + 1; i < 9; ++i) params.polyCoefficients[i] = 0.0f;
  if (params.headDim <= 64) return fwd::forward_hdim64(params, type, stream);
  if (params.headDim <= 128) return fwd::forward_hdim128(params, type, stream);
  return fwd::forward_hdim256(params, type, stream);
}

}  // namespace psa::gpu
