// What the kernel check programs share: PASS/FAIL reporting, device arrays on the emulated
// runtime, and float -> 16-bit encoding (round to nearest even, as the device conversions).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../cuda_compat.h"
#include "../../primitives.cuh"

namespace psa::check {

// Failed checks so far; main prints "<n> failed" and exits 1 when it is not 0.
inline int failures = 0;

// One line per check: "PASS <name>" or "FAIL <name>: <why>" (the jest runner reads these).
inline void report(const std::string& name, bool ok, const std::string& why = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), ok ? "" : ": ", ok ? "" : why.c_str());
  std::fflush(stdout);
  if (!ok) failures++;
}

// A device allocation of n elements (at least one byte, so that n = 0 still has an address).
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t n;
  explicit DeviceArray(std::size_t count) : n(count) { cudaMalloc(reinterpret_cast<void**>(&ptr), std::max<std::size_t>(n, 1) * sizeof(T)); }
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void put(const std::vector<T>& h) {
    if (n) cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  // Fill with 0xFF bytes (NaN for floats): a kernel that leaves an output unwritten shows.
  void poison() { cudaMemset(ptr, 0xFF, std::max<std::size_t>(n, 1) * sizeof(T)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    if (n) cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
};

// x rounded to nearest even as float16 or bfloat16 bits.
inline std::uint16_t encode(float x, gpu::MmaType type) {
  std::uint16_t u;
  if (type == gpu::MmaType::BF16) {
    const __nv_bfloat16 b = __float2bfloat16_rn(x);
    std::memcpy(&u, &b, 2);
  } else {
    const __half h = __float2half_rn(x);
    std::memcpy(&u, &h, 2);
  }
  return u;
}

}  // namespace psa::check
