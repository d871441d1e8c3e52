// The kernels for the baseline of the target (SSE2 on x86-64): correct on every CPU.
#include <cstdint>

#include "kernels.h"

namespace psa::cpu {
namespace portable {
#define PSA_CPU_KERNELS_NAME "portable"
#include "kernels.inl"
#undef PSA_CPU_KERNELS_NAME
}  // namespace portable

const Kernels& portableKernels() { return portable::kKernels; }

}  // namespace psa::cpu
