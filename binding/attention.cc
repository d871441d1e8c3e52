// attention(q, k, v, request) and buildLayout(q, k, request): the addon side of the cuda and
// cuda-emu backends. lib/device-backend.ts resolves and validates every option and hands over
// a flat request object; this file checks it again (the addon is reachable on its own, and a
// bad request must be refused, not run), copies it into gpu::AttentionRequest, holds a share of
// the input tensors' memory while the device works, and wraps what comes back. No math here.
#include "attention.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../cuda/attention_api.h"
#include "addon_state.h"
#include "device_tensor.h"
#include "host_array.h"
#include "layout_fields.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kKernelTile = 64;
constexpr int kMaxBlockSize = 256;
constexpr int kMaxGridYZ = 65535;

using fields::bad;
using fields::flag;
using fields::integer;
using fields::number;
using fields::product;

int dimension(Napi::Env env, const Napi::Object& o, const char* key, int max = INT_MAX) { return integer(env, o, key, 1, max, "shape"); }

// The caller's layout, copied and checked against the geometry: the kernels index with it.
void parse_layout(Napi::Env env, const Napi::Object& l, gpu::AttentionRequest& r) {
  const std::size_t rows = product(env, "layout", {r.batch, r.heads, (r.seqQ + r.blockSize - 1) / r.blockSize});
  fields::LayoutArrays a = fields::read_layout(env, l, rows, (r.seqK + r.blockSize - 1) / r.blockSize);
  r.layoutOffsets = std::move(a.offsets);
  r.layoutIndices = std::move(a.indices);
  r.layoutFlags = std::move(a.flags);
}

}  // namespace

gpu::AttentionRequest parse_request(Napi::Env env, const Napi::Value& value) {
  if (!value.IsObject()) AddonState::of(env).raise(env, "option", "request", "the attention request must be an object");
  const Napi::Object o = value.As<Napi::Object>();
  gpu::AttentionRequest r;
  const std::string compute = o.Get("compute").IsString() ? o.Get("compute").As<Napi::String>().Utf8Value() : "";
  if (compute != "float16" && compute != "bfloat16") bad(env, "dtype", "compute", "must be 'float16' or 'bfloat16'");
  r.compute = compute == "float16" ? gpu::DType::F16 : gpu::DType::BF16;
  r.batch = dimension(env, o, "batch", kMaxGridYZ);
  r.heads = dimension(env, o, "heads", kMaxGridYZ);
  r.kvHeads = dimension(env, o, "kvHeads", r.heads);
  if (r.heads % r.kvHeads != 0) bad(env, "shape", "kvHeads", "must divide heads");
  r.seqQ = dimension(env, o, "seqQ");
  r.seqK = dimension(env, o, "seqK");
  r.headDim = dimension(env, o, "headDim", kMaxHeadDim);
  r.bnhd = flag(o, "bnhd");
  r.scale = static_cast<float>(number(env, o, "scale"));
  if (!std::isfinite(r.scale)) bad(env, "option", "scale", "must be finite in float32");
  r.causal = flag(o, "causal");
  r.windowLeft = integer(env, o, "windowLeft", -1, INT_MAX);  // widened in the element rule
  r.windowRight = integer(env, o, "windowRight", -1, INT_MAX);
  r.globalTokens = integer(env, o, "globalTokens", 0, INT_MAX);
  r.blockSize = integer(env, o, "blockSize", kKernelTile, kMaxBlockSize);
  if (r.blockSize % kKernelTile != 0) bad(env, "option", "blockSize", "must be a multiple of " + std::to_string(kKernelTile));
  r.sparse = flag(o, "sparse");
  const Napi::Value layout = o.Get("layout");
  if (!layout.IsUndefined() && !layout.IsNull()) {
    if (!layout.IsObject()) bad(env, "option", "layout", "must be an object of offsets, indices and flags");
    if (!r.sparse) bad(env, "option", "layout", "needs sparse: true");
    r.hasLayout = true;
    parse_layout(env, layout.As<Napi::Object>(), r);
  }
  r.choice = static_cast<gpu::BlockChoice>(integer(env, o, "choice", 0, 3));
  r.choiceValue = number(env, o, "choiceValue");
  if (r.choiceValue < 0) bad(env, "option", "choiceValue", "must not be negative");
  r.minBlocks = integer(env, o, "minBlocks", 0, INT_MAX);
  r.maxBlocks = integer(env, o, "maxBlocks", r.minBlocks, INT_MAX);
  r.boundEstimate = flag(o, "boundEstimate");
  r.momentEstimate = flag(o, "momentEstimate");
  r.shareAcrossGroup = flag(o, "shareAcrossGroup");
  r.topK = integer(env, o, "topK", 0, INT_MAX);
  r.topKRatio = number(env, o, "topKRatio");
  if (r.topKRatio < 0 || r.topKRatio > 1) bad(env, "option", "topKRatio", "must be in [0, 1]");
  const Napi::Value poly = o.Get("polyCoefficients");
  if (!poly.IsUndefined() && !poly.IsNull()) {
    const std::vector<float> c = copy_host_array<float>(env, poly, napi_float32_array, "request.polyCoefficients", "a Float32Array");
    if (c.size() < 2 || c.size() > 9) bad(env, "option", "polyCoefficients", "must hold 2..9 values");
    for (float x : c) {
      if (!std::isfinite(x)) bad(env, "value", "polyCoefficients", "must be finite");
    }
    r.polyDegree = static_cast<int>(c.size()) - 1;
    std::copy(c.begin(), c.end(), r.polyCoefficients);
  }
  r.returnLse = flag(o, "returnLse");
  r.returnThresholds = flag(o, "returnThresholds");
  return r;
}

namespace {

const DeviceTensor& input(Napi::Env env, const Napi::Value& v, const char* name, std::size_t expected) {
  const DeviceTensor& t = DeviceTensor::from(env, v, name);
  if (t.count() != expected) {
    AddonState::of(env).raise(env, "shape", name, std::string(name) + " holds " + std::to_string(t.count()) + " elements, the shape needs " + std::to_string(expected));
  }
  return t;
}

}  // namespace

Inputs attach_inputs(Napi::Env env, const Napi::CallbackInfo& info, gpu::AttentionRequest& r, bool withV) {
  const std::size_t nq = product(env, "seqQ", {r.batch, r.heads, r.seqQ, r.headDim});
  const std::size_t nk = product(env, "seqK", {r.batch, r.kvHeads, r.seqK, r.headDim});
  const DeviceTensor& q = input(env, info[0], "q", nq);
  const DeviceTensor& k = input(env, info[1], "k", nk);
  const DeviceTensor* v = withV ? &input(env, info[2], "v", nk) : nullptr;
  const int device = q.memory()->buffer().device;
  if (k.memory()->buffer().device != device || (v && v->memory()->buffer().device != device)) {
    AddonState::of(env).raise(env, "option", "k", "q, k and v must be on the same device");
  }
  Inputs in{q.memory(), k.memory(), v ? v->memory() : nullptr};
  r.q = in.q->buffer();
  r.qType = q.type();
  r.k = in.k->buffer();
  r.kType = k.type();
  if (v) {
    r.v = in.v->buffer();
    r.vType = v->type();
  }
  return in;
}

namespace {

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
  AttentionWorker(Napi::Env env, gpu::AttentionRequest request, Inputs inputs)
      : PromiseWorker(env, "psa:attention"), request_(std::move(request)), inputs_(std::move(inputs)) {}
  ~AttentionWorker() override {
    // Only what Result did not hand over (a failure to build it, or a torn-down environment).
    gpu::free_buffer(result_.output);
    gpu::free_buffer(result_.lse);
    gpu::free_buffer(result_.thresholds);
  }

 protected:
  gpu::Status Run() override { return gpu::run_attention(request_, result_); }
  Napi::Value Result(Napi::Env env) override {
    const std::size_t rows = static_cast<std::size_t>(request_.batch) * request_.heads * request_.seqQ;
    Napi::Object out = Napi::Object::New(env);
    if (request_.sparse && !request_.hasLayout) out.Set("layout", layout_object(env, result_.offsets, result_.indices, result_.flags));
    out.Set("keptPairs", result_.keptPairs);
    out.Set("emptyRows", result_.emptyRows);
    out.Set("output", DeviceTensor::Wrap(env, adopt(result_.output), gpu::DType::F32, rows * request_.headDim));
    if (result_.lse.ptr) out.Set("lse", DeviceTensor::Wrap(env, adopt(result_.lse), gpu::DType::F32, rows));
    if (result_.thresholds.ptr) out.Set("thresholds", DeviceTensor::Wrap(env, adopt(result_.thresholds), gpu::DType::F32, rows));
    return out;
  }

 private:
  gpu::AttentionRequest request_;
  Inputs inputs_;
  gpu::AttentionResult result_;
};

class LayoutWorker : public PromiseWorker {
 public:
  LayoutWorker(Napi::Env env, gpu::AttentionRequest request, Inputs inputs)
      : PromiseWorker(env, "psa:layout"), request_(std::move(request)), inputs_(std::move(inputs)) {}

 protected:
  gpu::Status Run() override { return gpu::build_layout(request_, offsets_, indices_, flags_); }
  Napi::Value Result(Napi::Env env) override { return layout_object(env, offsets_, indices_, flags_); }

 private:
  gpu::AttentionRequest request_;
  Inputs inputs_;
  std::vector<std::int32_t> offsets_, indices_;
  std::vector<std::uint8_t> flags_;
};

}  // namespace

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gpu::AttentionRequest r = parse_request(env, info[3]);
  Inputs in = attach_inputs(env, info, r, true);
  return PromiseWorker::Start(std::make_unique<AttentionWorker>(env, std::move(r), std::move(in)));
}

Napi::Value BuildLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gpu::AttentionRequest r = parse_request(env, info[2]);
  if (!r.sparse || r.hasLayout) AddonState::of(env).raise(env, "option", "request.sparse", "buildLayout needs a sparse request without a layout");
  Inputs in = attach_inputs(env, info, r, false);
  return PromiseWorker::Start(std::make_unique<LayoutWorker>(env, std::move(r), std::move(in)));
}

}  // namespace psa::binding
