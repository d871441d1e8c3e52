// A device buffer held by JS: created by upload, read by download, freed by dispose() or, as
// a backstop, by the garbage collector. Its bytes are reported to V8 as external memory so
// that the collector sees the pressure of device allocations.
#pragma once

#include <napi.h>

#include "../cuda/device_api.h"

namespace psa::binding {

class DeviceTensor : public Napi::ObjectWrap<DeviceTensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A JS DeviceTensor that takes ownership of buf.
  static Napi::Object Wrap(Napi::Env env, const gpu::Buffer& buf, gpu::DType type, std::size_t count);

  explicit DeviceTensor(const Napi::CallbackInfo& info);
  ~DeviceTensor() override;

  // In-flight device work keeps the buffer alive past dispose(); the last one frees it.
  void begin_use() { pending_++; }
  void end_use(Napi::Env env);

  const gpu::Buffer& buffer() const { return buf_; }
  gpu::DType type() const { return type_; }
  std::size_t count() const { return count_; }
  bool disposed() const { return disposed_; }

 private:
  Napi::Value Download(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value GetType(const Napi::CallbackInfo& info);
  Napi::Value GetCount(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  void release(Napi::Env env);

  gpu::Buffer buf_;
  gpu::DType type_ = gpu::DType::F32;
  std::size_t count_ = 0;
  bool disposed_ = false;
  int pending_ = 0;
  std::int64_t reported_bytes_ = 0;
};

}  // namespace psa::binding
