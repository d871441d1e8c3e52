// attention(q, k, v, request) and buildLayout(q, k, request): the addon side of the cuda and
// cuda-emu backends. lib/device-backend.ts resolves and validates every option and hands over
// a flat request object; this file only moves it into gpu::AttentionRequest, keeps the input
// tensors alive while the device works, and wraps what comes back. No math here.
#include "attention.h"

#include <algorithm>
#include <string>
#include <vector>

#include "../cuda/attention_api.h"
#include "addon_state.h"
#include "device_tensor.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

[[noreturn]] void bad(Napi::Env env, const std::string& what) { AddonState::of(env).raise(env, "shape", "attention request: " + what); }

double number(Napi::Env env, const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) bad(env, std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int integer(Napi::Env env, const Napi::Object& o, const char* key) {
  const double d = number(env, o, key);
  if (d != static_cast<double>(static_cast<int>(d))) bad(env, std::string(key) + " must be a 32-bit integer");
  return static_cast<int>(d);
}

bool flag(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

template <typename T>
std::vector<T> copy_array(Napi::Env env, const Napi::Object& o, const char* key, napi_typedarray_type type) {
  const Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) bad(env, std::string("layout.") + key + " has the wrong type");
  const Napi::TypedArray a = v.As<Napi::TypedArray>();
  const T* data = reinterpret_cast<const T*>(static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(data, data + a.ElementLength());
}

DeviceTensor* tensor_arg(Napi::Env env, const Napi::Value& v, const char* name) {
  AddonState& state = AddonState::of(env);
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(state.tensor_constructor.Value())) bad(env, std::string(name) + " must be a device tensor");
  DeviceTensor* t = DeviceTensor::Unwrap(v.As<Napi::Object>());
  if (t->disposed()) state.raise(env, "disposed", std::string(name) + " was used after dispose()");
  return t;
}

gpu::AttentionRequest parse_request(Napi::Env env, const Napi::Object& o) {
  gpu::AttentionRequest r;
  const std::string compute = o.Get("compute").IsString() ? o.Get("compute").As<Napi::String>().Utf8Value() : "";
  if (compute != "float16" && compute != "bfloat16") AddonState::of(env).raise(env, "dtype", "compute must be 'float16' or 'bfloat16'");
  r.compute = compute == "float16" ? gpu::DType::F16 : gpu::DType::BF16;
  r.batch = integer(env, o, "batch");
  r.heads = integer(env, o, "heads");
  r.kvHeads = integer(env, o, "kvHeads");
  r.seqQ = integer(env, o, "seqQ");
  r.seqK = integer(env, o, "seqK");
  r.headDim = integer(env, o, "headDim");
  r.bnhd = flag(o, "bnhd");
  r.scale = static_cast<float>(number(env, o, "scale"));
  r.causal = flag(o, "causal");
  r.windowLeft = integer(env, o, "windowLeft");
  r.windowRight = integer(env, o, "windowRight");
  r.globalTokens = integer(env, o, "globalTokens");
  r.blockSize = integer(env, o, "blockSize");
  r.sparse = flag(o, "sparse");
  const Napi::Value layout = o.Get("layout");
  if (layout.IsObject()) {
    const Napi::Object l = layout.As<Napi::Object>();
    r.hasLayout = true;
    r.layoutOffsets = copy_array<std::int32_t>(env, l, "offsets", napi_int32_array);
    r.layoutIndices = copy_array<std::int32_t>(env, l, "indices", napi_int32_array);
    r.layoutFlags = copy_array<std::uint8_t>(env, l, "flags", napi_uint8_array);
  }
  const int choice = integer(env, o, "choice");
  if (choice < 0 || choice > 3) bad(env, "choice must be 0..3");
  r.choice = static_cast<gpu::BlockChoice>(choice);
  r.choiceValue = number(env, o, "choiceValue");
  r.minBlocks = integer(env, o, "minBlocks");
  r.maxBlocks = integer(env, o, "maxBlocks");
  r.boundEstimate = flag(o, "boundEstimate");
  r.shareAcrossGroup = flag(o, "shareAcrossGroup");
  r.topK = integer(env, o, "topK");
  r.topKRatio = number(env, o, "topKRatio");
  const Napi::Value poly = o.Get("polyCoefficients");
  if (poly.IsTypedArray()) {
    const std::vector<float> c = copy_array<float>(env, o, "polyCoefficients", napi_float32_array);
    if (c.size() < 2 || c.size() > 9) bad(env, "polyCoefficients must hold 2..9 values");
    r.polyDegree = static_cast<int>(c.size()) - 1;
    for (std::size_t i = 0; i < c.size(); i++) r.polyCoefficients[i] = c[i];
  }
  r.returnLse = flag(o, "returnLse");
  r.returnThresholds = flag(o, "returnThresholds");
  return r;
}

// The input tensors of a call: their buffers, kept alive (and their memory kept) until it ends.
class InputUse {
 public:
  void add(DeviceTensor* t, const Napi::Value& object) {
    t->begin_use();
    tensors_.push_back(t);
    refs_.push_back(Napi::Persistent(object.As<Napi::Object>()));
  }
  void end(Napi::Env env) {
    for (DeviceTensor* t : tensors_) t->end_use(env);
    tensors_.clear();
    refs_.clear();
  }

 private:
  std::vector<DeviceTensor*> tensors_;
  std::vector<Napi::ObjectReference> refs_;
};

void check_count(Napi::Env env, DeviceTensor* t, std::size_t expected, const char* name) {
  if (t->count() != expected) bad(env, std::string(name) + " holds " + std::to_string(t->count()) + " elements, the shape needs " + std::to_string(expected));
}

// Reads q (and k, v) into the request, checking their sizes against the shape.
void attach_inputs(Napi::Env env, const Napi::CallbackInfo& info, gpu::AttentionRequest& r, InputUse& use, bool withV) {
  const std::size_t nq = static_cast<std::size_t>(r.batch) * r.heads * r.seqQ * r.headDim;
  const std::size_t nk = static_cast<std::size_t>(r.batch) * r.kvHeads * r.seqK * r.headDim;
  DeviceTensor* q = tensor_arg(env, info[0], "q");
  DeviceTensor* k = tensor_arg(env, info[1], "k");
  DeviceTensor* v = withV ? tensor_arg(env, info[2], "v") : nullptr;
  check_count(env, q, nq, "q");
  check_count(env, k, nk, "k");
  if (v) check_count(env, v, nk, "v");
  if (k->buffer().device != q->buffer().device || (v && v->buffer().device != q->buffer().device)) bad(env, "q, k and v must be on the same device");
  r.q = q->buffer();
  r.qType = q->type();
  r.k = k->buffer();
  r.kType = k->type();
  use.add(q, info[0]);
  use.add(k, info[1]);
  if (v) {
    r.v = v->buffer();
    r.vType = v->type();
    use.add(v, info[2]);
  }
}

Napi::Object layout_object(Napi::Env env, const std::vector<std::int32_t>& offsets, const std::vector<std::int32_t>& indices, const std::vector<std::uint8_t>& flags) {
  Napi::Object l = Napi::Object::New(env);
  Napi::Int32Array o = Napi::Int32Array::New(env, offsets.size());
  std::copy(offsets.begin(), offsets.end(), o.Data());
  Napi::Int32Array i = Napi::Int32Array::New(env, indices.size());
  std::copy(indices.begin(), indices.end(), i.Data());
  Napi::Uint8Array f = Napi::Uint8Array::New(env, flags.size());
  std::copy(flags.begin(), flags.end(), f.Data());
  l.Set("offsets", o);
  l.Set("indices", i);
  l.Set("flags", f);
  return l;
}

class AttentionWorker : public PromiseWorker {
 public:
  AttentionWorker(Napi::Env env, gpu::AttentionRequest request, InputUse&& use)
      : PromiseWorker(env, "psa:attention"), request_(std::move(request)), use_(std::move(use)) {}

 protected:
  gpu::Status Run() override { return gpu::run_attention(request_, result_); }
  Napi::Value Result(Napi::Env env) override {
    const std::size_t rows = static_cast<std::size_t>(request_.batch) * request_.heads * request_.seqQ;
    Napi::Object out = Napi::Object::New(env);
    out.Set("output", DeviceTensor::Wrap(env, result_.output, gpu::DType::F32, rows * request_.headDim));
    if (result_.lse.ptr) out.Set("lse", DeviceTensor::Wrap(env, result_.lse, gpu::DType::F32, rows));
    if (result_.thresholds.ptr) out.Set("thresholds", DeviceTensor::Wrap(env, result_.thresholds, gpu::DType::F32, rows));
    if (request_.sparse && !request_.hasLayout) out.Set("layout", layout_object(env, result_.offsets, result_.indices, result_.flags));
    out.Set("keptPairs", result_.keptPairs);
    out.Set("emptyRows", result_.emptyRows);
    return out;
  }
  void Finished() override { use_.end(Env()); }

 private:
  gpu::AttentionRequest request_;
  InputUse use_;
  gpu::AttentionResult result_;
};

class LayoutWorker : public PromiseWorker {
 public:
  LayoutWorker(Napi::Env env, gpu::AttentionRequest request, InputUse&& use)
      : PromiseWorker(env, "psa:layout"), request_(std::move(request)), use_(std::move(use)) {}

 protected:
  gpu::Status Run() override { return gpu::build_layout(request_, offsets_, indices_, flags_); }
  Napi::Value Result(Napi::Env env) override { return layout_object(env, offsets_, indices_, flags_); }
  void Finished() override { use_.end(Env()); }

 private:
  gpu::AttentionRequest request_;
  InputUse use_;
  std::vector<std::int32_t> offsets_, indices_;
  std::vector<std::uint8_t> flags_;
};

Napi::Object request_arg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) bad(env, "the request must be an object");
  return v.As<Napi::Object>();
}

}  // namespace

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gpu::AttentionRequest r = parse_request(env, request_arg(env, info[3]));
  InputUse use;
  attach_inputs(env, info, r, use, true);
  return (new AttentionWorker(env, std::move(r), std::move(use)))->Start();
}

Napi::Value BuildLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gpu::AttentionRequest r = parse_request(env, request_arg(env, info[2]));
  InputUse use;
  attach_inputs(env, info, r, use, false);
  return (new LayoutWorker(env, std::move(r), std::move(use)))->Start();
}

}  // namespace psa::binding
