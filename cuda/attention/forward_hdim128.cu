// The forward kernel's head-dim 128 instantiations (head dims 65..128, zero-padded): one unit per
// head dim so that they compile in parallel (FlashAttention 2's flash_fwd_hdim*.cu).
#include "forward.h"
#include "forward_kernel.cuh"

namespace psa::gpu::fwd {

cudaError_t forward_hdim128(const ForwardParams& params, MmaType type, cudaStream_t stream) {
  return use_wide_tiles(params, WideForwardTraits<128>::kSmemBytes) ? run<WideForwardTraits<128>>(params, type, stream) : run<ForwardTraits<128>>(params, type, stream);
}

}  // namespace psa::gpu::fwd
