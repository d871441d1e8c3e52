// The kernels for the baseline of the target (SSE2 on x86-64): correct on every CPU.
#include <cstdint>

#include "backward_kernels.h"
#include "kernels.h"

namespace psa::cpu {
namespace portable {
#define PSA_CPU_KERNELS_NAME "portable"
#include "kernels.inl"
#include "backward_kernels.inl"
#undef PSA_CPU_KERNELS_NAME
}  // namespace portable

const Kernels& portableKernels() { return portable::kKernels; }
const BackwardKernels& portableBackwardKernels() { return portable::kBackwardKernels; }

}  // namespace psa::cpu
