// Host launchers of the backward kernels: validate, then pick the head-dim unit.
#include "backward.h"

#include "../attention/tile_shape.h"

namespace psa::gpu {
namespace {

bool valid(const ForwardParams& p) {
  const Shape& s = p.shape;
  if (s.batch < 1 || s.heads < 1 || s.kvHeads < 1 || s.heads % s.kvHeads != 0 || s.seqQ < 1 || s.seqK < 1) return false;
  if (s.heads > 65535 || s.batch > 65535 || s.headDim < 1 || s.headDim > kBackwardMaxHeadDim) return false;
  if (p.blockSize < 64 || p.blockSize > 256 || p.blockSize % 64 != 0 || p.polyDegree < 0 || p.polyDegree > 8) return false;
  return p.q && p.k && p.v && (!p.layoutOffsets || (p.layoutIndices && p.layoutFlags));
}

}  // namespace

cudaError_t attention_backward_row_max(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream) {
  if (!valid(p) || !rowMax) return cudaErrorInvalidValue;
  return padded_head_dim(p.shape.headDim) == 64 ? bwd::row_max_hdim64(p, type, rowMax, stream) : bwd::row_max_hdim128(p, type, rowMax, stream);
}

cudaError_t attention_backward_gradients(const BackwardParams& in, MmaType type, cudaStream_t stream) {
  if (!valid(in.fwd) || !in.dO || !in.rows || !in.dq || !in.dk || !in.dv) return cudaErrorInvalidValue;
  if (in.fwd.layoutOffsets && (!in.tOffsets || !in.tQueryBlocks || !in.tEntries)) return cudaErrorInvalidValue;
  BackwardParams bp = in;
  for (int i = bp.fwd.polyDegree + 1; i < 9; ++i) bp.fwd.polyCoefficients[i] = 0.0f;  // the unrolled degree-8 Horner equals the true degree's
  return padded_head_dim(bp.fwd.shape.headDim) == 64 ? bwd::gradients_hdim64(bp, type, stream) : bwd::gradients_hdim128(bp, type, stream);
}

}  // namespace psa::gpu
