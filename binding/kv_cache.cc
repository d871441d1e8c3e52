// kvPoolCreate(request) => Promise<{ keys, values, meta }> and
// kvPoolAppend(keys, values, meta, k, v, request) => Promise<void>. lib/kv-cache.ts decides
// where every token goes (page table, free pages) and checks the inputs; this file checks the
// request again against the pool, so a bad one is refused before the device writes anything.
#include "kv_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "addon_state.h"
#include "device_tensor.h"
#include "host_array.h"
#include "promise_worker.h"
#include "request_fields.h"

namespace psa::binding {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kMaxPageSize = 128;  // cuda/decode/traits.h kMaxPageSize

gpu::DType pool_type(Napi::Env env, const Napi::Object& o) {
  const std::string t = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "";
  if (t == "float16") return gpu::DType::F16;
  if (t == "bfloat16") return gpu::DType::BF16;
  fields::bad(env, "dtype", "dtype", "must be 'float16' or 'bfloat16'");
}

void pool_geometry(Napi::Env env, const Napi::Object& o, gpu::PoolBuffers& p) {
  p.kvHeads = fields::integer(env, o, "kvHeads", 1, 65535, "shape");
  p.pageSize = fields::integer(env, o, "pageSize", 1, kMaxPageSize);
  p.headDim = fields::integer(env, o, "headDim", 1, kMaxHeadDim, "shape");
}

class CreateWorker : public PromiseWorker {
 public:
  CreateWorker(Napi::Env env, gpu::PoolBuffers pool) : PromiseWorker(env, "psa:kvPoolCreate"), pool_(pool) {}
  ~CreateWorker() override { gpu::free_pool(pool_); }  // only what Result did not hand over

 protected:
  gpu::Status Run() override { return gpu::alloc_pool(pool_); }
  Napi::Value Result(Napi::Env env) override {
    const std::size_t elements = static_cast<std::size_t>(pool_.pages) * pool_.kvHeads * pool_.pageSize * pool_.headDim;
    const std::size_t meta = static_cast<std::size_t>(pool_.pages) * pool_.kvHeads * 4 * pool_.headDim;
    Napi::Object out = Napi::Object::New(env);
    out.Set("keys", DeviceTensor::Wrap(env, adopt(pool_.keys), pool_.type, elements));
    out.Set("values", DeviceTensor::Wrap(env, adopt(pool_.values), pool_.type, elements));
    out.Set("meta", DeviceTensor::Wrap(env, adopt(pool_.meta), gpu::DType::F32, meta));
    return out;
  }

 private:
  gpu::PoolBuffers pool_;
};

class AppendWorker : public PromiseWorker {
 public:
  AppendWorker(Napi::Env env, gpu::AppendRequest request, PoolShares pool, SharedMemory k, SharedMemory v)
      : PromiseWorker(env, "psa:kvPoolAppend"), request_(std::move(request)), pool_(std::move(pool)), k_(std::move(k)), v_(std::move(v)) {}

 protected:
  gpu::Status Run() override { return gpu::run_append(request_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  gpu::AppendRequest request_;
  PoolShares pool_;
  SharedMemory k_, v_;
};

}  // namespace

PoolShares pool_of(Napi::Env env, const Napi::Value& keys, const Napi::Value& values, const Napi::Value& meta, const Napi::Object& request) {
  const AddonState& state = AddonState::of(env);
  const DeviceTensor& k = DeviceTensor::from(env, keys, "keys");
  const DeviceTensor& v = DeviceTensor::from(env, values, "values");
  const DeviceTensor& m = DeviceTensor::from(env, meta, "meta");
  PoolShares s;
  pool_geometry(env, request, s.view);
  s.view.type = k.type();
  const std::size_t page = static_cast<std::size_t>(s.view.kvHeads) * s.view.pageSize * s.view.headDim;
  if (k.type() == gpu::DType::F32 || v.type() != k.type() || m.type() != gpu::DType::F32) state.raise(env, "dtype", "keys", "the pool's keys and values must share a 16-bit type and its metadata be float32");
  if (k.count() % page != 0 || v.count() != k.count() || k.count() / page > 0x7fffffff) state.raise(env, "shape", "keys", "the pool tensors do not hold whole pages of this geometry");
  s.view.pages = static_cast<int>(k.count() / page);
  if (m.count() != static_cast<std::size_t>(s.view.pages) * s.view.kvHeads * 4 * s.view.headDim) state.raise(env, "shape", "meta", "the metadata does not match the pool");
  const int device = k.memory()->buffer().device;
  if (v.memory()->buffer().device != device || m.memory()->buffer().device != device) state.raise(env, "option", "values", "the pool tensors must be on one device");
  s.keys = k.memory();
  s.values = v.memory();
  s.meta = m.memory();
  s.view.keys = s.keys->buffer();
  s.view.values = s.values->buffer();
  s.view.meta = s.meta->buffer();
  return s;
}

// kvPoolCreate({ pages, kvHeads, pageSize, headDim, dtype, device })
Napi::Value KvPoolCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object o = fields::object(env, info[0], "the pool request");
  gpu::PoolBuffers pool;
  pool_geometry(env, o, pool);
  pool.type = pool_type(env, o);
  pool.pages = fields::integer(env, o, "pages", 1, 0x7fffffff, "shape");
  pool.keys.device = o.Get("device").IsUndefined() ? 0 : fields::integer(env, o, "device", 0, 0x7fffffff);
  const double elements = static_cast<double>(pool.pages) * pool.kvHeads * pool.pageSize * pool.headDim;
  if (elements > 9007199254740992.0) fields::bad(env, "oom", "pages", "asks for more memory than a device has");
  return PromiseWorker::Start(std::make_unique<CreateWorker>(env, pool));
}

// kvPoolAppend(keys, values, meta, k, v, { kvHeads, pageSize, headDim, sequences, n, slots, touched, touchedKeys })
Napi::Value KvPoolAppend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const AddonState& state = AddonState::of(env);
  const Napi::Object o = fields::object(env, info[5], "the append request");
  PoolShares pool = pool_of(env, info[0], info[1], info[2], o);
  gpu::AppendRequest r;
  r.sequences = fields::integer(env, o, "sequences", 1, 0x7fffffff, "shape");
  r.n = fields::integer(env, o, "n", 1, 0x7fffffff, "shape");
  const DeviceTensor& k = DeviceTensor::from(env, info[3], "k");
  const DeviceTensor& v = DeviceTensor::from(env, info[4], "v");
  const double expected = static_cast<double>(r.sequences) * pool.view.kvHeads * r.n * pool.view.headDim;
  if (static_cast<double>(k.count()) != expected) state.raise(env, "shape", "k", "k holds " + std::to_string(k.count()) + " elements, the append needs " + std::to_string(static_cast<long long>(expected)));
  if (v.count() != k.count() || v.type() != k.type()) state.raise(env, "shape", "v", "v must match k in size and type");
  if (k.memory()->buffer().device != pool.view.keys.device || v.memory()->buffer().device != pool.view.keys.device) state.raise(env, "option", "k", "k and v must be on the cache's device");
  r.slots = copy_host_array<std::int32_t>(env, o.Get("slots"), napi_int32_array, "request.slots", "an Int32Array");
  r.touched = copy_host_array<std::int32_t>(env, o.Get("touched"), napi_int32_array, "request.touched", "an Int32Array");
  r.touchedKeys = copy_host_array<std::int32_t>(env, o.Get("touchedKeys"), napi_int32_array, "request.touchedKeys", "an Int32Array");
  const long long slotsInPool = static_cast<long long>(pool.view.pages) * pool.view.pageSize;
  if (r.slots.size() != static_cast<std::size_t>(r.sequences) * r.n) fields::bad(env, "shape", "slots", "must hold one slot per appended token");
  for (std::int32_t s : r.slots) {
    if (s < 0 || s >= slotsInPool) fields::bad(env, "shape", "slots", "names a slot outside the pool");
  }
  if (r.touchedKeys.size() != r.touched.size()) fields::bad(env, "shape", "touchedKeys", "must hold one count per touched page");
  for (std::size_t i = 0; i < r.touched.size(); i++) {
    if (r.touched[i] < 0 || r.touched[i] >= pool.view.pages) fields::bad(env, "shape", "touched", "names a page outside the pool");
    if (r.touchedKeys[i] < 1 || r.touchedKeys[i] > pool.view.pageSize) fields::bad(env, "shape", "touchedKeys", "must be in 1..pageSize");
  }
  r.pool = pool.view;
  r.k = k.memory()->buffer();
  r.v = v.memory()->buffer();
  r.kType = k.type();
  SharedMemory kMem = k.memory(), vMem = v.memory();
  return PromiseWorker::Start(std::make_unique<AppendWorker>(env, std::move(r), std::move(pool), std::move(kMem), std::move(vMem)));
}

}  // namespace psa::binding
