// Module entry: per-environment state, runtime info, uploads and the value check. No math
// lives here: the CUDA layer (cuda/device_api.h) does the device work.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../cuda/attention/finite.h"
#if defined(PSA_EMULATED)
#include "../cuda/emu/counters.h"
#endif
#include "addon_state.h"
#include "attention.h"
#include "backward.h"
#include "cpu_attention.h"
#include "cpu_decode.h"
#include "decode.h"
#include "device_tensor.h"
#include "guard.h"
#include "host_array.h"
#include "kv_cache.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

gpu::DType parse_dtype(Napi::Env env, const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "float32") return gpu::DType::F32;
  if (s == "float16") return gpu::DType::F16;
  if (s == "bfloat16") return gpu::DType::BF16;
  AddonState::of(env).raise(env, "dtype", "options.type", "options.type must be 'float32', 'float16' or 'bfloat16'");
}

int parse_device(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return 0;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 2147483647.0 && d == std::floor(d))) {
    AddonState::of(env).raise(env, "option", "options.device", "options.device must be an integer in 0..2147483647");
  }
  return static_cast<int>(d);
}

// Allocates a device buffer and fills it from the host copy taken when the call was made.
template <typename T>
class UploadWorker : public PromiseWorker {
 public:
  UploadWorker(Napi::Env env, std::vector<T> data, gpu::DType type, int device)
      : PromiseWorker(env, "psa:upload"), data_(std::move(data)), count_(data_.size()), type_(type), device_(device) {}
  ~UploadWorker() override { gpu::free_buffer(buf_); }  // only what Result did not hand over

 protected:
  gpu::Status Run() override {
    gpu::Status s = gpu::alloc_buffer(buf_, count_ * gpu::dtype_size(type_), device_);
    if (!s.ok()) return s;
    if constexpr (std::is_same_v<T, float>) {
      s = gpu::upload_f32(data_.data(), count_, type_, buf_);
    } else {
      s = gpu::upload_raw16(data_.data(), count_, buf_);
    }
    std::vector<T>().swap(data_);  // the host copy is no longer needed
    if (!s.ok()) gpu::free_buffer(buf_);  // nothing half-made survives a failure
    return s;
  }
  Napi::Value Result(Napi::Env env) override { return DeviceTensor::Wrap(env, adopt(buf_), type_, count_); }

 private:
  std::vector<T> data_;
  std::size_t count_;
  gpu::DType type_;
  int device_;
  gpu::Buffer buf_;
};

// The first element of each tensor that fails |x| < bound (-1: none), checked on the device,
// one wait for them all.
class ValueCheckWorker : public PromiseWorker {
 public:
  ValueCheckWorker(Napi::Env env, const std::vector<const DeviceTensor*>& tensors, float bound, bool many)
      : PromiseWorker(env, "psa:firstNonFinite"), bound_(bound), many_(many), indices_(tensors.size(), -1) {
    for (const DeviceTensor* t : tensors) {
      memory_.push_back(t->memory());
      checks_.push_back(gpu::ValueCheck{t->memory()->buffer(), t->type(), t->count()});
    }
  }

 protected:
  gpu::Status Run() override { return gpu::first_non_finite(checks_.data(), checks_.size(), bound_, indices_.data()); }
  Napi::Value Result(Napi::Env env) override {
    if (!many_) return Napi::Number::New(env, static_cast<double>(indices_[0]));
    Napi::Array out = Napi::Array::New(env, indices_.size());
    for (std::size_t i = 0; i < indices_.size(); ++i) out.Set(static_cast<std::uint32_t>(i), Napi::Number::New(env, static_cast<double>(indices_[i])));
    return out;
  }

 private:
  std::vector<SharedMemory> memory_;  // holds every buffer until the check is done
  std::vector<gpu::ValueCheck> checks_;
  float bound_;
  bool many_;
  std::vector<long long> indices_;
};

Napi::Object status_object(Napi::Env env, const gpu::Status& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("code", s.code);
  o.Set("name", s.name);
  o.Set("message", s.message);
  return o;
}

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
  if (!rt.error.ok()) out.Set("error", status_object(env, rt.error));
  const gpu::Status sticky = gpu::device_unusable();
  if (!sticky.ok()) out.Set("unusable", status_object(env, sticky));
  return out;
}

// unusable() => null, or the sticky failure that made the device unusable for this process.
Napi::Value Unusable(const Napi::CallbackInfo& info) {
  const gpu::Status sticky = gpu::device_unusable();
  return sticky.ok() ? info.Env().Null() : Napi::Value(status_object(info.Env(), sticky));
}

// upload(Float32Array, dtype, device?) => Promise<DeviceTensor>
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<float> data = copy_host_array<float>(env, info[0], napi_float32_array, "data", "a Float32Array");
  const gpu::DType type = parse_dtype(env, info[1]);
  const int device = parse_device(env, info[2]);
  return PromiseWorker::Start(std::make_unique<UploadWorker<float>>(env, std::move(data), type, device));
}

// uploadRaw16(Uint16Array, 'float16' | 'bfloat16', device?) => Promise<DeviceTensor>
Napi::Value UploadRaw16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::uint16_t> data = copy_host_array<std::uint16_t>(env, info[0], napi_uint16_array, "data", "a Uint16Array of float16 or bfloat16 bit patterns");
  const gpu::DType type = parse_dtype(env, info[1]);
  if (type == gpu::DType::F32) AddonState::of(env).raise(env, "dtype", "options.type", "raw 16-bit data must be 'float16' or 'bfloat16'");
  const int device = parse_device(env, info[2]);
  return PromiseWorker::Start(std::make_unique<UploadWorker<std::uint16_t>>(env, std::move(data), type, device));
}

float parse_bound(Napi::Env env, const Napi::Value& value) {
  double bound = INFINITY;
  if (!value.IsUndefined()) {
    bound = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
    if (!(bound > 0)) AddonState::of(env).raise(env, "option", "bound", "bound must be a positive number or Infinity");
  }
  return static_cast<float>(bound);
}

// firstNonFinite(tensor, bound = Infinity) => Promise<number>: the first index whose value x
// fails |x| < bound (NaN and infinities always do), or -1.
Napi::Value FirstNonFinite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DeviceTensor& t = DeviceTensor::from(env, info[0], "tensor");
  const float bound = parse_bound(env, info[1]);
  return PromiseWorker::Start(std::make_unique<ValueCheckWorker>(env, std::vector<const DeviceTensor*>{&t}, bound, false));
}

// firstNonFiniteEach(tensors, bound = Infinity) => Promise<number[]>: firstNonFinite of each
// tensor, all checked at once with one wait.
Napi::Value FirstNonFiniteEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0 || info[0].As<Napi::Array>().Length() > 64) {
    AddonState::of(env).raise(env, "shape", "tensors", "tensors must be an array of 1 to 64 device tensors");
  }
  const Napi::Array list = info[0].As<Napi::Array>();
  std::vector<const DeviceTensor*> tensors;
  for (std::uint32_t i = 0; i < list.Length(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    tensors.push_back(&DeviceTensor::from(env, list.Get(i), name.c_str()));
  }
  const float bound = parse_bound(env, info[1]);
  return PromiseWorker::Start(std::make_unique<ValueCheckWorker>(env, tensors, bound, true));
}

#if defined(PSA_EMULATED)
// Tests only (emulated build): a launch that faults, to exercise the sticky-error latch.
class FaultWorker : public PromiseWorker {
 public:
  explicit FaultWorker(Napi::Env env) : PromiseWorker(env, "psa:fault") {}

 protected:
  gpu::Status Run() override { return gpu::launch_faulting_kernel(); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
};

Napi::Value FaultForTests(const Napi::CallbackInfo& info) { return PromiseWorker::Start(std::make_unique<FaultWorker>(info.Env())); }

// Profiling (emulated build): counters(action). 'start' turns the model's performance counters
// on from zero, 'stop' turns them off, 'take' returns the counts since the last start or take
// (cuda/emu/counters.h), summed per kernel, and restarts them.
Napi::Object shared_object(Napi::Env env, const emu::SharedTraffic& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("requests", static_cast<double>(t.requests));
  o.Set("wavefronts", static_cast<double>(t.wavefronts));
  o.Set("ideal", static_cast<double>(t.ideal));
  o.Set("bytes", static_cast<double>(t.bytes));
  o.Set("maxWays", t.maxWays);
  return o;
}

Napi::Object global_object(Napi::Env env, const emu::GlobalTraffic& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("requests", static_cast<double>(t.requests));
  o.Set("sectors", static_cast<double>(t.sectors));
  o.Set("bytesUsed", static_cast<double>(t.bytesUsed));
  return o;
}

Napi::Value Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string action = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (action == "start" || action == "stop") {
    emu::counters_enable(action == "start");
    return env.Undefined();
  }
  if (action != "take") AddonState::of(env).raise(env, "option", "action", "action must be 'start', 'stop' or 'take'");
  const emu::CounterSnapshot snap = emu::counters_take();
  const std::vector<emu::KernelCounters> kernels = emu::counters_by_kernel(snap.launches);
  Napi::Array list = Napi::Array::New(env, kernels.size());
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    const emu::KernelCounters& k = kernels[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", k.name);
    o.Set("launches", static_cast<double>(k.launches));
    o.Set("ctas", static_cast<double>(k.ctas));
    o.Set("tensorFlops", static_cast<double>(k.tensorFlops));
    o.Set("ldmatrix", shared_object(env, k.ldmatrix));
    o.Set("sharedLoad", shared_object(env, k.sharedLoad));
    o.Set("sharedStore", shared_object(env, k.sharedStore));
    o.Set("sharedAtomic", shared_object(env, k.sharedAtomic));
    o.Set("cpAsyncShared", shared_object(env, k.cpAsyncShared));
    o.Set("globalLoad", global_object(env, k.globalLoad));
    o.Set("globalStore", global_object(env, k.globalStore));
    o.Set("globalAtomic", global_object(env, k.globalAtomic));
    o.Set("cpAsyncGlobal", global_object(env, k.cpAsyncGlobal));
    o.Set("cpAsyncBytes", static_cast<double>(k.cpAsyncBytes));
    o.Set("barriers", static_cast<double>(k.barriers));
    o.Set("exp2", static_cast<double>(k.exp2));
    list.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object host = Napi::Object::New(env);
  host.Set("allocations", static_cast<double>(snap.host.allocations));
  host.Set("frees", static_cast<double>(snap.host.frees));
  host.Set("syncs", static_cast<double>(snap.host.syncs));
  Napi::Object out = Napi::Object::New(env);
  out.Set("kernels", list);
  out.Set("launches", static_cast<double>(snap.launches.size()));
  out.Set("host", host);
  return out;
}
#endif

Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  // Per-environment state: freed by Node when this environment (thread) shuts down.
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);
  state->tensor_constructor = Napi::Persistent(DeviceTensor::Define(env));
  exports.Set("init", Napi::Function::New<Guarded<Init>>(env, "init"));
  exports.Set("info", Napi::Function::New<Guarded<Info>>(env, "info"));
  exports.Set("unusable", Napi::Function::New<Guarded<Unusable>>(env, "unusable"));
  exports.Set("upload", Napi::Function::New<Guarded<Upload>>(env, "upload"));
  exports.Set("uploadRaw16", Napi::Function::New<Guarded<UploadRaw16>>(env, "uploadRaw16"));
  exports.Set("firstNonFinite", Napi::Function::New<Guarded<FirstNonFinite>>(env, "firstNonFinite"));
  exports.Set("firstNonFiniteEach", Napi::Function::New<Guarded<FirstNonFiniteEach>>(env, "firstNonFiniteEach"));
  exports.Set("attention", Napi::Function::New<Guarded<Attention>>(env, "attention"));
  exports.Set("buildLayout", Napi::Function::New<Guarded<BuildLayout>>(env, "buildLayout"));
  exports.Set("kvPoolCreate", Napi::Function::New<Guarded<KvPoolCreate>>(env, "kvPoolCreate"));
  exports.Set("kvPoolAppend", Napi::Function::New<Guarded<KvPoolAppend>>(env, "kvPoolAppend"));
  exports.Set("decode", Napi::Function::New<Guarded<Decode>>(env, "decode"));
  exports.Set("mergeAttention", Napi::Function::New<Guarded<MergeAttention>>(env, "mergeAttention"));
  exports.Set("backward", Napi::Function::New<Guarded<Backward>>(env, "backward"));
  RegisterCpu(env, exports);
  RegisterCpuDecode(env, exports);
#if defined(PSA_EMULATED)
  exports.Set("faultForTests", Napi::Function::New<Guarded<FaultForTests>>(env, "faultForTests"));
  exports.Set("counters", Napi::Function::New<Guarded<Counters>>(env, "counters"));
#endif
  return exports;
}

}  // namespace psa::binding

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return psa::binding::ModuleInit(env, exports); }

NODE_API_MODULE(psa_attention, InitModule)
