// Module entry: per-environment state, runtime info and the upload entry points. No math
// lives here: the CUDA layer (cuda/device_api.h) does the device work.
#include <napi.h>

#include <string>

#include "addon_state.h"
#include "attention.h"
#include "cpu_attention.h"
#include "device_tensor.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

gpu::DType parse_dtype(Napi::Env env, const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "float32") return gpu::DType::F32;
  if (s == "float16") return gpu::DType::F16;
  if (s == "bfloat16") return gpu::DType::BF16;
  AddonState::of(env).raise(env, "dtype", "dtype must be 'float32', 'float16' or 'bfloat16'");
}

int parse_device(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return 0;
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 || v.As<Napi::Number>().DoubleValue() != v.As<Napi::Number>().Int32Value()) {
    AddonState::of(env).raise(env, "shape", "device must be a non-negative integer");
  }
  return v.As<Napi::Number>().Int32Value();
}

// Allocates a device buffer and fills it from host memory kept alive by a reference.
class UploadWorker : public PromiseWorker {
 public:
  UploadWorker(Napi::Env env, Napi::TypedArray source, gpu::DType type, int device, bool raw16)
      : PromiseWorker(env, "psa:upload"), type_(type), device_(device), raw16_(raw16), count_(source.ElementLength()) {
    source_ = Napi::Persistent(Napi::Object(env, source));
    data_ = static_cast<const char*>(source.ArrayBuffer().Data()) + source.ByteOffset();
  }

 protected:
  gpu::Status Run() override {
    gpu::Status s = gpu::alloc_buffer(buf_, count_ * gpu::dtype_size(type_), device_);
    if (!s.ok()) return s;
    s = raw16_ ? gpu::upload_raw16(reinterpret_cast<const std::uint16_t*>(data_), count_, buf_)
               : gpu::upload_f32(reinterpret_cast<const float*>(data_), count_, type_, buf_);
    if (!s.ok()) gpu::free_buffer(buf_);  // nothing half-made survives a failure
    return s;
  }
  Napi::Value Result(Napi::Env env) override { return DeviceTensor::Wrap(env, buf_, type_, count_); }

 private:
  Napi::ObjectReference source_;
  const char* data_;
  gpu::DType type_;
  int device_;
  bool raw16_;
  std::size_t count_;
  gpu::Buffer buf_;
};

}  // namespace

// init(errorFactory): the JS side hands over the function that builds coded errors.
Napi::Value Init(const Napi::CallbackInfo& info) {
    if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "init(errorFactory) needs a function");
    AddonState::of(info.Env()).error_factory = Napi::Persistent(info[0].As<Napi::Function>());
    return info.Env().Undefined();
  }

Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const gpu::RuntimeInfo rt = gpu::query_runtime();
    Napi::Object out = Napi::Object::New(env);
    out.Set("compiled", rt.compiled);
    out.Set("flavor", rt.flavor);
    out.Set("targets", rt.targets);
    out.Set("runtimeVersion", rt.runtimeVersion);
    out.Set("driverVersion", rt.driverVersion);
    Napi::Array devices = Napi::Array::New(env, rt.devices.size());
    for (std::size_t i = 0; i < rt.devices.size(); i++) {
      const gpu::DeviceInfo& d = rt.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      o.Set("multiprocessors", d.multiprocessors);
      o.Set("totalMemory", static_cast<double>(d.totalMemory));
      o.Set("freeMemory", static_cast<double>(d.freeMemory));
      devices.Set(static_cast<uint32_t>(i), o);
    }
    out.Set("devices", devices);
    if (!rt.error.ok()) {
      Napi::Object err = Napi::Object::New(env);
      err.Set("code", rt.error.code);
      err.Set("name", rt.error.name);
      err.Set("message", rt.error.message);
      out.Set("error", err);
    }
    return out;
  }

// upload(Float32Array, dtype, device?) => Promise<DeviceTensor>
Napi::Value Upload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      AddonState::of(env).raise(env, "dtype", "upload needs a Float32Array");
    }
    const gpu::DType type = parse_dtype(env, info[1]);
    const int device = parse_device(env, info[2]);
    return (new UploadWorker(env, info[0].As<Napi::TypedArray>(), type, device, false))->Start();
  }

// uploadRaw16(Uint16Array, 'float16' | 'bfloat16', device?) => Promise<DeviceTensor>
Napi::Value UploadRaw16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
      AddonState::of(env).raise(env, "dtype", "uploadRaw16 needs a Uint16Array of float16 or bfloat16 bit patterns");
    }
    const gpu::DType type = parse_dtype(env, info[1]);
    if (type == gpu::DType::F32) AddonState::of(env).raise(env, "dtype", "raw 16-bit data must be 'float16' or 'bfloat16'");
    const int device = parse_device(env, info[2]);
    return (new UploadWorker(env, info[0].As<Napi::TypedArray>(), type, device, true))->Start();
  }

Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  // Per-environment state: freed by Node when this environment (thread) shuts down.
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);
  state->tensor_constructor = Napi::Persistent(DeviceTensor::Define(env));
  exports.Set("init", Napi::Function::New<Init>(env, "init"));
  exports.Set("info", Napi::Function::New<Info>(env, "info"));
  exports.Set("upload", Napi::Function::New<Upload>(env, "upload"));
  exports.Set("uploadRaw16", Napi::Function::New<UploadRaw16>(env, "uploadRaw16"));
  exports.Set("attention", Napi::Function::New<Attention>(env, "attention"));
  exports.Set("buildLayout", Napi::Function::New<BuildLayout>(env, "buildLayout"));
  RegisterCpu(env, exports);
  return exports;
}

}  // namespace psa::binding

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return psa::binding::ModuleInit(env, exports); }

NODE_API_MODULE(psa_attention, InitModule)
