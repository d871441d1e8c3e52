// A device buffer held by JS: created by upload (or as an attention output), read by
// download, released by dispose() or, as a backstop, by the garbage collector. The memory is
// shared with the work in flight on it (device_memory.h), so disposing an input of a running
// call is safe and the call still completes. Its bytes are reported to V8 as external memory
// while the handle holds them, so the collector sees the pressure of device allocations.
#pragma once

#include <napi.h>

#include <string>

#include "device_memory.h"

namespace psa::binding {

class DeviceTensor : public Napi::ObjectWrap<DeviceTensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A JS DeviceTensor holding `memory` (count elements of `type`). `report`: tell V8 about its
  // bytes (not for a second handle on memory another handle already reports).
  static Napi::Object Wrap(Napi::Env env, SharedMemory memory, gpu::DType type, std::size_t count, bool report = true);
  // The live DeviceTensor `value` is, or a coded error naming `argument`: ERR_DTYPE when it
  // is not one of ours (whatever its prototype says), ERR_DISPOSED after dispose().
  static DeviceTensor& from(Napi::Env env, const Napi::Value& value, const std::string& argument);

  // Only Wrap can construct one; `new` from JS is refused.
  explicit DeviceTensor(const Napi::CallbackInfo& info);
  ~DeviceTensor() override;

  const SharedMemory& memory() const { return memory_; }
  gpu::DType type() const { return type_; }
  std::size_t count() const { return count_; }

 private:
  static Napi::Value Download(const Napi::CallbackInfo& info);
  static Napi::Value Dispose(const Napi::CallbackInfo& info);
  // A second handle on the same memory, released on its own: a call holds one so that the
  // caller's dispose() cannot reach its inputs.
  static Napi::Value Share(const Napi::CallbackInfo& info);
  static Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  static Napi::Value GetType(const Napi::CallbackInfo& info);
  static Napi::Value GetCount(const Napi::CallbackInfo& info);
  static Napi::Value GetDevice(const Napi::CallbackInfo& info);
  // `this` as one of ours (disposed or not), or a coded error.
  static DeviceTensor& self(const Napi::CallbackInfo& info);
  void release();

  napi_env env_ = nullptr;
  SharedMemory memory_;
  gpu::DType type_ = gpu::DType::F32;
  std::size_t count_ = 0;
  int device_ = 0;
  std::int64_t reported_bytes_ = 0;
};

}  // namespace psa::binding
