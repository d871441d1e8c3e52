// Host-side helpers every launcher shares: the stream all work goes on, the 1-D grid of an
// element-wise launch, and a device buffer freed at scope exit (so a failed step leaks nothing).
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "cuda_compat.h"
#include "device_api.h"
#include "runtime_status.h"

namespace psa::gpu {

// The per-thread default stream: calls from different Node worker threads never serialise on
// one another, and a step's work is ordered without explicit events.
inline cudaStream_t launch_stream() { return cudaStreamPerThread; }

// Blocks for `n` elements at `threads` per block, capped at 4096 (the kernels are grid-stride
// loops), and at least 1 so an empty launch is still valid.
inline unsigned grid_for(std::size_t n, int threads) {
  const std::size_t t = static_cast<std::size_t>(threads);
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>((n + t - 1) / t, 4096)));
}

// A device buffer freed when it goes out of scope, unless released to the caller.
class Owned {
 public:
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { free_buffer(buf_); }
  // A zero-byte request still yields a valid pointer (alloc_buffer rounds it up).
  Status alloc(std::size_t bytes, int device) { return alloc_buffer(buf_, bytes, device); }
  template <typename T> T* as() const { return static_cast<T*>(buf_.ptr); }
  Buffer release() { return std::exchange(buf_, Buffer{}); }

 private:
  Buffer buf_;
};

// Host data copied into a new device buffer on launch_stream(). The host vector must outlive
// the copy: callers synchronise the stream before it goes.
template <typename T>
Status upload(Owned& dst, const std::vector<T>& host, int device, const char* what) {
  Status s = dst.alloc(host.size() * sizeof(T), device);
  if (!s.ok()) return s;
  if (!host.empty()) PSA_TRY(cudaMemcpyAsync(dst.as<void>(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, launch_stream()), what);
  return Status::success();
}

}  // namespace psa::gpu
