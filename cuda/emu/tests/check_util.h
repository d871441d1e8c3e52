// What the kernel check programs share: PASS/FAIL reporting, device arrays on the emulated
// runtime, float -> 16-bit encoding (round to nearest even, as the device conversions), and the
// geometry of an attention case with the host rule of allowed keys and the layout built from it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../../cuda_compat.h"
#include "../../attention/params.h"
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

// "" when a launcher and the launch it made succeeded, else why not.
inline std::string launch_failure(cudaError_t launcher) {
  const cudaError_t last = cudaGetLastError();
  if (launcher == cudaSuccess && last == cudaSuccess) return "";
  return std::string("launch: ") + cudaGetErrorString(launcher != cudaSuccess ? launcher : last);
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

// The shape, memory layout and token mask of one forward or top-k case. allowed() is the host
// rule the kernels are checked against: docs/contract.md#allowed-keys element by element, an
// independent re-derivation (not the kernels' element_mask.cuh), positions and window ends in
// 64 bits.
struct MaskedCase {
  std::string name;
  int batch = 1, heads = 1, kvHeads = 1, seqQ = 64, seqK = 64, headDim = 64;
  bool bnhd = false;
  bool causal = false;
  // Sparse structure: allowed = causal and (window or sinks or selected blocks). Without it: dense.
  bool sparse = false;
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  std::function<bool(int b, int h, int I, int J)> selected;  // in blockSize blocks; null: none selected
  bool nullLayout = false;  // dense only: pass no layout, let the kernel enumerate its tiles
  int blockSize = 64;       // of the layout (and of `selected`'s I, J); the kernels tile by 64 anyway

  gpu::Shape shape() const { return gpu::Shape{batch, heads, kvHeads, seqQ, seqK, headDim}; }
  gpu::MaskSpec mask() const { return gpu::MaskSpec{causal, windowLeft, windowRight, globalTokens}; }
  // Of q and o (keys false) or k and v (keys true).
  gpu::Strides strides(bool keys) const { return gpu::strides_of(bnhd, keys ? kvHeads : heads, keys ? seqK : seqQ, headDim); }
  std::size_t index(bool keys, int b, int h, int n, int d) const { return static_cast<std::size_t>(gpu::offset_of(strides(keys), b, h, n)) + d; }
  std::size_t elements(bool keys) const { return static_cast<std::size_t>(batch) * (keys ? kvHeads : heads) * (keys ? seqK : seqQ) * headDim; }

  bool allowed(int b, int h, int i, int j) const {
    const long long p = static_cast<long long>(i) + seqK - seqQ;
    if (causal && j > p) return false;
    if (!sparse) return true;
    if (selected && selected(b, h, i / blockSize, j / blockSize)) return true;
    if (windowLeft >= 0 && j >= p - windowLeft && j <= p + windowRight) return true;
    return j < globalTokens;
  }
};

// --quick (the sanitizer builds, where each CUDA thread is an OS thread and a case runs 50 to
// 100 times slower) runs float16 only, and only the cases of at most maxPairs (query, key)
// pairs, which still take every code path: each layout kind, head dim and block size has a
// small case.
inline bool quick = false;
inline bool skipped_when_quick(const MaskedCase& c, gpu::MmaType type, long long maxPairs) {
  return quick && (type != gpu::MmaType::F16 || static_cast<long long>(c.seqQ) * c.seqK > maxPairs);
}

// The case's layout, element by element: a key block is listed when some valid pair is allowed,
// full when every valid pair is, selected when chosen (or dense). CSR rows (b * heads + h) *
// numQueryBlocks + I.
struct HostLayout {
  std::vector<std::int32_t> offsets, indices;
  std::vector<std::uint8_t> flags;
};

inline HostLayout layout_of(const MaskedCase& c) {
  const int bs = c.blockSize, nQB = (c.seqQ + bs - 1) / bs, nKB = (c.seqK + bs - 1) / bs;
  HostLayout l;
  l.offsets.assign(static_cast<std::size_t>(c.batch) * c.heads * nQB + 1, 0);
  for (int b = 0; b < c.batch; b++)
    for (int h = 0; h < c.heads; h++)
      for (int I = 0; I < nQB; I++) {
        for (int J = 0; J < nKB; J++) {
          bool any = false, all = true;
          for (int i = I * bs; i < std::min(c.seqQ, (I + 1) * bs); i++)
            for (int j = J * bs; j < std::min(c.seqK, (J + 1) * bs); j++) {
              const bool a = c.allowed(b, h, i, j);
              any = any || a;
              all = all && a;
            }
          if (!any) continue;
          const bool sel = !c.sparse || (c.selected && c.selected(b, h, I, J));
          l.indices.push_back(J);
          l.flags.push_back(static_cast<std::uint8_t>((sel ? gpu::kBlockSelected : 0) | (all ? gpu::kBlockFull : 0)));
        }
        l.offsets[(static_cast<std::size_t>(b) * c.heads + h) * nQB + I + 1] = static_cast<std::int32_t>(l.indices.size());
      }
  return l;
}

// The layout on the device, and the parameters every forward and top-k launch of a case shares.
struct DeviceLayout {
  DeviceArray<std::int32_t> offsets, indices;
  DeviceArray<std::uint8_t> flags;
  explicit DeviceLayout(const HostLayout& l) : offsets(l.offsets.size()), indices(l.indices.size()), flags(l.flags.size()) {
    offsets.put(l.offsets);
    indices.put(l.indices);
    flags.put(l.flags);
  }
};

inline gpu::ForwardParams forward_params(const MaskedCase& c, const DeviceLayout& layout, const std::uint16_t* q, const std::uint16_t* k, float scale) {
  gpu::ForwardParams p;
  p.q = q;
  p.k = k;
  p.qStrides = p.oStrides = c.strides(false);
  p.kStrides = p.vStrides = c.strides(true);
  p.shape = c.shape();
  p.scale = scale;
  p.mask = c.mask();
  p.blockSize = c.blockSize;  // with no layout the kernels ignore it (64-key tiles)
  if (!c.nullLayout) {
    p.layoutOffsets = layout.offsets.ptr;
    p.layoutIndices = layout.indices.ptr;
    p.layoutFlags = layout.flags.ptr;
  }
  return p;
}

}  // namespace psa::check
