// The forward kernel's head-dim 128 instantiations (head dims 65..128, zero-padded): one unit per
// head dim so that they compile in parallel (FlashAttention 2's flash_fwd_hdim*.cu).
#include "forward.h"
#include "forward_kernel.cuh"

namespace psa::gpu::fwd {

// 64-row tiles only: the 128-row kernel needs 255 registers and spills at d 128 (cuda/PERF.md §5.2).
cudaError_t forward_hdim128(const ForwardParams& params, MmaType type, cudaStream_t stream) { return run<ForwardTraits<128>>(params, type, stream); }

}  // namespace psa::gpu::fwd
