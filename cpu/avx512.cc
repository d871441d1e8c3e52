// The kernels on 16-lane vectors compiled with -mavx512f -mavx512vl -mavx512dq -mfma
// (cmake/cpu.cmake sets the flags on this file only); only reached through bestKernels() on a
// CPU that reports those features. 32 vector registers hold the wider register tiles.
#include <cstdint>

#include "kernels.h"

namespace psa::cpu {
namespace avx512 {
#define PSA_CPU_KERNELS_NAME "avx512"
#define PSA_CPU_LANES 16
#include "kernels.inl"
#undef PSA_CPU_LANES
#undef PSA_CPU_KERNELS_NAME
}  // namespace avx512

const Kernels* avx512Kernels() { return &avx512::kKernels; }

}  // namespace psa::cpu
