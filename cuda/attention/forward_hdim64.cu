// The forward kernel's head-dim 64 instantiations (head dims 1..64, zero-padded): one unit per
// head dim so that they compile in parallel (FlashAttention 2's flash_fwd_hdim*.cu).
#include "forward.h"
#include "forward_kernel.cuh"

namespace psa::gpu::fwd {

cudaError_t forward_hdim64(const ForwardParams& params, MmaType type, cudaStream_t stream) {
  return use_wide_tiles(params, WideForwardTraits<64>::kSmemBytes) ? run<WideForwardTraits<64>>(params, type, stream) : run<ForwardTraits<64>>(params, type, stream);
}

}  // namespace psa::gpu::fwd
