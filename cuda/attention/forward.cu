// Host launcher of the fused sparse attention forward kernel: validates the parameters and
// picks the head-dim unit (forward_hdim<D>.cu), whose dispatch turns the remaining runtime
// options into template arguments (forward_kernel.cuh, fwd::run).
#include "forward.h"

#include "forward_traits.h"

namespace psa::gpu {

int attention_forward_smem_bytes(int headDim, int tileRows) {
  if (tileRows == 128) {
    switch (padded_head_dim(headDim)) {
      case 64: return WideForwardTraits<64>::kSmemBytes;
      case 128: return WideForwardTraits<128>::kSmemBytes;
      default: return 0;
    }
  }
  if (tileRows != 64) return 0;
  switch (padded_head_dim(headDim)) {
    case 64: return ForwardTraits<64>::kSmemBytes;
    case 128: return ForwardTraits<128>::kSmemBytes;
    case 256: return ForwardTraits<256>::kSmemBytes;
    default: return 0;
  }
}

namespace fwd {

bool use_wide_tiles(const ForwardParams& params, int wideSmemBytes) {
  // One 64-row tile of queries (decode-like calls) gains nothing from 128 rows but idle warps.
  if (params.shape.seqQ <= 64) return false;
  if (params.layoutOffsets != nullptr && params.blockSize % 128 != 0) return false;
  int device = 0, perSm = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&perSm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the 64-row tiles run anywhere
    return false;
  }
  // Two CTAs an SM at least: where only one would fit, two 64-row CTAs hide each other's copies
  // better than one 128-row CTA.
  return ctas_by_smem(perSm, wideSmemBytes) >= 2;
}

}  // namespace fwd

cudaError_t attention_forward(const ForwardParams& in, MmaType type, cudaStream_t stream) {
  constexpr int kTile = kLayoutKeyUnit;
  const Shape& s = in.shape;
  if (s.batch < 0 || s.heads <= 0 || s.kvHeads <= 0 || s.heads % s.kvHeads != 0 || s.seqQ < 0 || s.seqK < 0) return cudaErrorInvalidValue;
  if (s.heads > 65535 || s.batch > 65535) return cudaErrorInvalidValue;  // grid y and z
  if (padded_head_dim(s.headDim) == 0) return cudaErrorInvalidValue;
  if (in.blockSize < kTile || in.blockSize > 4 * kTile || in.blockSize % kTile != 0) return cudaErrorInvalidValue;
  if (in.polyDegree < 0 || in.polyDegree > 8) return cudaErrorInvalidValue;
  if (s.batch == 0 || s.seqQ == 0) return cudaSuccess;
  if (!in.q || !in.o || (s.seqK > 0 && (!in.k || !in.v))) return cudaErrorInvalidValue;
  if (in.layoutOffsets && (!in.layoutIndices || !in.layoutFlags)) return cudaErrorInvalidValue;
  ForwardParams params = in;
  // Coefficients above the degree are zero: the unrolled Horner of degree 8 then equals the
  // Horner of the true degree exactly (0 * f + 0 = 0, then 0 * f + c = c).
  for (int i = params.polyDegree + 1; i < 9; ++i) params.polyCoefficients[i] = 0.0f;
  switch (padded_head_dim(s.headDim)) {
    case 64: return fwd::forward_hdim64(params, type, stream);
    case 128: return fwd::forward_hdim128(params, type, stream);
    default: return fwd::forward_hdim256(params, type, stream);
  }
}

}  // namespace psa::gpu
