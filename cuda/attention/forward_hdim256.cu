// The forward kernel's head-dim 256 instantiations (head dims 129..256, zero-padded): one unit per
// head dim so that they compile in parallel (FlashAttention 2's flash_fwd_hdim*.cu).
#include "forward.h"
#include "forward_kernel.cuh"

namespace psa::gpu::fwd {

cudaError_t forward_hdim256(const ForwardParams& params, MmaType type, cudaStream_t stream) { return run<ForwardTraits<256>>(params, type, stream); }

}  // namespace psa::gpu::fwd
