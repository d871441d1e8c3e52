// Picks the kernel set once, from the CPU's reported features.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace psa::cpu {

#if !defined(PSA_CPU_HAVE_AVX2)
const Kernels* avx2Kernels() { return nullptr; }
#endif

namespace {
const Kernels& choose() {
  const char* forced = std::getenv("PSA_CPU_SIMD");
  if (forced && std::strcmp(forced, "portable") == 0) return portableKernels();
#if defined(PSA_CPU_HAVE_AVX2)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return *avx2Kernels();
#endif
  return portableKernels();
}
}  // namespace

const Kernels& bestKernels() {
  static const Kernels& chosen = choose();
  return chosen;
}

}  // namespace psa::cpu
