// The backward kernels' head-dim 64 instantiations (head dims 1..64, zero-padded): one unit per
// head dim so that they compile in parallel, as the forward's.
#include "backward.h"
#include "backward_launch.cuh"

namespace psa::gpu::bwd {

cudaError_t gradients_hdim64(const BackwardParams& bp, MmaType type, cudaStream_t stream) { return gradients<BackwardTraits<64>>(bp, type, stream); }
cudaError_t row_max_hdim64(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream) { return row_max<BackwardTraits<64>>(p, type, rowMax, stream); }

}  // namespace psa::gpu::bwd
