#include "device_tensor.h"

#include "addon_state.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

const char* dtype_name(gpu::DType t) {
  switch (t) {
    case gpu::DType::F32: return "float32";
    case gpu::DType::F16: return "float16";
    case gpu::DType::BF16: return "bfloat16";
  }
  return "unknown";
}

// Reads a device tensor back into a Float32Array allocated on the main thread.
class DownloadWorker : public PromiseWorker {
 public:
  DownloadWorker(Napi::Env env, DeviceTensor* tensor, Napi::Object tensor_object)
      : PromiseWorker(env, "psa:download"), tensor_(tensor), count_(tensor->count()) {
    tensor_ref_ = Napi::Persistent(tensor_object);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count_ * sizeof(float));
    out_ = Napi::Persistent(Napi::Float32Array::New(env, count_, ab, 0));
    host_ = reinterpret_cast<float*>(ab.Data());
    tensor_->begin_use();
  }

 protected:
  gpu::Status Run() override { return gpu::download_f32(tensor_->buffer(), tensor_->type(), count_, host_); }
  Napi::Value Result(Napi::Env) override { return out_.Value(); }
  void Finished() override { tensor_->end_use(Env()); }

 private:
  DeviceTensor* tensor_;
  Napi::ObjectReference tensor_ref_;  // keeps the tensor alive while the copy runs
  Napi::Reference<Napi::Float32Array> out_;
  float* host_ = nullptr;
  std::size_t count_;
};

}  // namespace

Napi::Function DeviceTensor::Define(Napi::Env env) {
  return DefineClass(env, "DeviceTensor",
                     {
                         InstanceMethod<&DeviceTensor::Download>("download"),
                         InstanceMethod<&DeviceTensor::Dispose>("dispose"),
                         InstanceAccessor<&DeviceTensor::GetDisposed>("disposed"),
                         InstanceAccessor<&DeviceTensor::GetType>("type"),
                         InstanceAccessor<&DeviceTensor::GetCount>("count"),
                         InstanceAccessor<&DeviceTensor::GetDevice>("device"),
                     });
}

Napi::Object DeviceTensor::Wrap(Napi::Env env, const gpu::Buffer& buf, gpu::DType type, std::size_t count) {
  Napi::Object obj = AddonState::of(env).tensor_constructor.New({});
  DeviceTensor* t = Unwrap(obj);
  t->buf_ = buf;
  t->type_ = type;
  t->count_ = count;
  t->reported_bytes_ = static_cast<std::int64_t>(buf.bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, t->reported_bytes_);
  return obj;
}

DeviceTensor::DeviceTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensor>(info) {}

DeviceTensor::~DeviceTensor() {
  // Finalizer backstop: the JS object is gone, so no work can be pending on it.
  gpu::free_buffer(buf_);
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

void DeviceTensor::release(Napi::Env env) {
  gpu::free_buffer(buf_);
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_bytes_);
  reported_bytes_ = 0;
}

void DeviceTensor::end_use(Napi::Env env) {
  if (--pending_ == 0 && disposed_) release(env);
}

Napi::Value DeviceTensor::Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (disposed_) AddonState::of(env).raise(env, "disposed", "DeviceTensor was used after dispose()");
  return (new DownloadWorker(env, this, info.This().As<Napi::Object>()))->Start();
}

Napi::Value DeviceTensor::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed_) {
    disposed_ = true;
    if (pending_ == 0) release(info.Env());
  }
  return info.Env().Undefined();
}

Napi::Value DeviceTensor::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }
Napi::Value DeviceTensor::GetType(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(type_)); }
Napi::Value DeviceTensor::GetCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(count_)); }
Napi::Value DeviceTensor::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), buf_.device); }

}  // namespace psa::binding
