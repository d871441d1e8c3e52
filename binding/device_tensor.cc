#include "device_tensor.h"

#include <algorithm>
#include <vector>

#include "addon_state.h"
#include "guard.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

// Marks the objects this addon made, so a look-alike (Object.create(prototype), another
// addon's wrapped object) is refused instead of unwrapped.
constexpr napi_type_tag kTensorTag = {0x7073612d61747465ull, 0x6e74696f6e2d7465ull};
// Handed to the constructor by Wrap: JS cannot produce it.
int construct_token = 0;

const char* dtype_name(gpu::DType t) {
  switch (t) {
    case gpu::DType::F32: return "float32";
    case gpu::DType::F16: return "float16";
    case gpu::DType::BF16: return "bfloat16";
  }
  return "unknown";
}

// Reads a device tensor back as float32 into host memory of its own, then into a new
// Float32Array on the main thread.
class DownloadWorker : public PromiseWorker {
 public:
  DownloadWorker(Napi::Env env, const DeviceTensor& tensor)
      : PromiseWorker(env, "psa:download"), memory_(tensor.memory()), type_(tensor.type()), host_(tensor.count()) {}

 protected:
  gpu::Status Run() override { return gpu::download_f32(memory_->buffer(), type_, host_.size(), host_.data()); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Float32Array out = Napi::Float32Array::New(env, host_.size());
    std::copy(host_.begin(), host_.end(), out.Data());
    return out;
  }

 private:
  SharedMemory memory_;
  gpu::DType type_;
  std::vector<float> host_;
};

}  // namespace

Napi::Function DeviceTensor::Define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, "DeviceTensor", {});
  // Methods and accessors check `this` themselves (ObjectWrap's would throw an uncoded error).
  Napi::Object proto = constructor.Get("prototype").As<Napi::Object>();
  proto.DefineProperties({
      Napi::PropertyDescriptor::Function(env, proto, "download", &Guarded<&DeviceTensor::Download>),
      Napi::PropertyDescriptor::Function(env, proto, "dispose", &Guarded<&DeviceTensor::Dispose>),
      Napi::PropertyDescriptor::Function(env, proto, "share", &Guarded<&DeviceTensor::Share>),
      Napi::PropertyDescriptor::Accessor<&Guarded<&DeviceTensor::GetDisposed>>("disposed"),
      Napi::PropertyDescriptor::Accessor<&Guarded<&DeviceTensor::GetType>>("type"),
      Napi::PropertyDescriptor::Accessor<&Guarded<&DeviceTensor::GetCount>>("count"),
      Napi::PropertyDescriptor::Accessor<&Guarded<&DeviceTensor::GetDevice>>("device"),
  });
  return constructor;
}

Napi::Object DeviceTensor::Wrap(Napi::Env env, SharedMemory memory, gpu::DType type, std::size_t count, bool report) {
  Napi::Object obj = AddonState::of(env).tensor_constructor.New({Napi::External<int>::New(env, &construct_token)});
  DeviceTensor* t = Unwrap(obj);
  t->type_ = type;
  t->count_ = count;
  t->device_ = memory->buffer().device;
  t->reported_bytes_ = report ? static_cast<std::int64_t>(memory->buffer().bytes) : 0;
  t->memory_ = std::move(memory);
  int64_t ignored = 0;
  if (t->reported_bytes_) napi_adjust_external_memory(env, t->reported_bytes_, &ignored);
  return obj;
}

DeviceTensor::DeviceTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensor>(info), env_(info.Env()) {
  const bool internal = info.Length() == 1 && info[0].IsExternal() && info[0].As<Napi::External<int>>().Data() == &construct_token;
  if (!internal) AddonState::of(info.Env()).raise(info.Env(), "option", "DeviceTensor", "DeviceTensor cannot be constructed directly; use Tensor.upload()");
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
}

DeviceTensor::~DeviceTensor() { release(); }

void DeviceTensor::release() {
  memory_.reset();
  if (reported_bytes_) {
    int64_t ignored = 0;
    napi_adjust_external_memory(env_, -reported_bytes_, &ignored);
  }
  reported_bytes_ = 0;
}

namespace {
// The DeviceTensor behind `value` when this addon made it, else null.
DeviceTensor* ours(napi_env env, const Napi::Value& value) {
  bool tagged = false;
  void* unwrapped = nullptr;
  if (!value.IsObject() || napi_check_object_type_tag(env, value, &kTensorTag, &tagged) != napi_ok || !tagged) return nullptr;
  if (napi_unwrap(env, value, &unwrapped) != napi_ok) return nullptr;
  return static_cast<DeviceTensor*>(unwrapped);
}
}  // namespace

DeviceTensor& DeviceTensor::from(Napi::Env env, const Napi::Value& value, const std::string& argument) {
  DeviceTensor* t = ours(env, value);
  if (!t) AddonState::of(env).raise(env, "dtype", argument, argument + " must be a device tensor made by this addon");
  if (!t->memory_) AddonState::of(env).raise(env, "disposed", argument, argument + " was used after dispose()");
  return *t;
}

DeviceTensor& DeviceTensor::self(const Napi::CallbackInfo& info) {
  DeviceTensor* t = ours(info.Env(), info.This());
  if (!t) AddonState::of(info.Env()).raise(info.Env(), "dtype", "this", "DeviceTensor methods must be called on a device tensor");
  return *t;
}

Napi::Value DeviceTensor::Download(const Napi::CallbackInfo& info) {
  self(info);  // a foreign `this` is ERR_DTYPE, a disposed one ERR_DISPOSED
  const DeviceTensor& t = from(info.Env(), info.This(), "tensor");
  return PromiseWorker::Start(std::make_unique<DownloadWorker>(info.Env(), t));
}

Napi::Value DeviceTensor::Dispose(const Napi::CallbackInfo& info) {
  self(info).release();
  return info.Env().Undefined();
}

Napi::Value DeviceTensor::Share(const Napi::CallbackInfo& info) {
  self(info);
  const DeviceTensor& t = from(info.Env(), info.This(), "tensor");
  return Wrap(info.Env(), t.memory_, t.type_, t.count_, false);
}

Napi::Value DeviceTensor::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !self(info).memory_); }
Napi::Value DeviceTensor::GetType(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(self(info).type_)); }
Napi::Value DeviceTensor::GetCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(self(info).count_)); }
Napi::Value DeviceTensor::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), self(info).device_); }

}  // namespace psa::binding
