// The backward in a build without CUDA: unreachable through the library (the cuda backend is
// unavailable there), answered like every other device call of such a build.
#include "../backward_api.h"

namespace psa::gpu {

Status run_backward(const BackwardRequest&, BackwardResult&) {
  return Status{-1, "psaNotBuiltWithCuda", "this build of the addon has no CUDA kernels; rebuild with the CUDA toolkit installed: npx psa build"};
}

}  // namespace psa::gpu
