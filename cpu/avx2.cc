// The kernels compiled with -mavx2 -mfma (cmake/cpu.cmake sets the flags on this file only);
// only reached through bestKernels() on a CPU that reports both features.
#include <cstdint>

#include "backward_kernels.h"
#include "kernels.h"

namespace psa::cpu {
namespace avx2 {
#define PSA_CPU_KERNELS_NAME "avx2+fma"
#include "kernels.inl"
#include "backward_kernels.inl"
#undef PSA_CPU_KERNELS_NAME
}  // namespace avx2

const Kernels* avx2Kernels() { return &avx2::kKernels; }
const BackwardKernels* avx2BackwardKernels() { return &avx2::kBackwardKernels; }

}  // namespace psa::cpu
