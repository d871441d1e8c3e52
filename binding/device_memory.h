// A device allocation shared by its JS handle and by the work in flight on it: dispose()
// drops the handle's share, and the memory is freed when the last holder lets go.
#pragma once

#include <memory>

#include "../cuda/device_api.h"

namespace psa::binding {

class DeviceMemory {
 public:
  explicit DeviceMemory(const gpu::Buffer& buf) : buf_(buf) {}
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { gpu::free_buffer(buf_); }
  const gpu::Buffer& buffer() const { return buf_; }

 private:
  gpu::Buffer buf_;
};

using SharedMemory = std::shared_ptr<DeviceMemory>;

// Takes ownership of `buf`, leaving it empty; if the allocation of the share throws, `buf` is
// still the caller's to free.
inline SharedMemory adopt(gpu::Buffer& buf) {
  SharedMemory m = std::make_shared<DeviceMemory>(buf);
  buf = gpu::Buffer{};
  return m;
}

}  // namespace psa::binding
