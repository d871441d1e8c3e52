// Picks the kernel set once, from the CPU's reported features.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace psa::cpu {

#if !defined(PSA_CPU_HAVE_AVX2)
const Kernels* avx2Kernels() { return nullptr; }
const Kernels* avx512Kernels() { return nullptr; }
#endif

std::vector<const Kernels*> supportedKernels() {
  std::vector<const Kernels*> sets = {&portableKernels()};
#if defined(PSA_CPU_HAVE_AVX2)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) sets.push_back(avx2Kernels());
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    sets.push_back(avx512Kernels());
  }
#endif
  return sets;
}

namespace {
const Kernels& choose() {
  const std::vector<const Kernels*> sets = supportedKernels();
  const char* forced = std::getenv("PSA_CPU_SIMD");
  // A cap: the named set where the CPU has it, else the best below it.
  if (forced && std::strcmp(forced, "portable") == 0) return *sets.front();
  if (forced && std::strcmp(forced, "avx2") == 0 && sets.size() > 1) return *sets[1];
  return *sets.back();
}
}  // namespace

const Kernels& bestKernels() {
  static const Kernels& chosen = choose();
  return chosen;
}

}  // namespace psa::cpu
