// decode(q, keys, values, meta, request, workspace?) and mergeAttention(outputs, lses, headDim): the addon
// side of decode on a device cache (lib/backends/device-decode.ts). The request carries the
// resolved options and the host page table of q's sequences; both are checked here against the
// pool before the step runs. No math here.
#include "decode.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "addon_state.h"
#include "device_tensor.h"
#include "host_array.h"
#include "kv_cache.h"
#include "promise_worker.h"
#include "request_fields.h"

namespace psa::binding {
namespace {

constexpr int kMaxGroup = 256;        // cuda/decode/plan_kernel.cuh
constexpr int kMaxPlanPages = 4096;   // cuda/decode/traits.h

gpu::DecodeRequest parse(Napi::Env env, const Napi::Object& o, const gpu::PoolBuffers& pool) {
  gpu::DecodeRequest r;
  r.pool = pool;
  r.batch = fields::integer(env, o, "batch", 1, 65535, "shape");
  r.heads = fields::integer(env, o, "heads", 1, 65535, "shape");
  if (r.heads % pool.kvHeads != 0 || r.heads / pool.kvHeads > kMaxGroup) fields::bad(env, "shape", "heads", "must be a multiple of kvHeads, at most " + std::to_string(kMaxGroup) + " per kv head");
  r.m = fields::integer(env, o, "m", 1, 0x7fffffff, "shape");
  r.tableStride = fields::integer(env, o, "tableStride", 1, kMaxPlanPages, "shape");
  r.pageTable = copy_host_array<std::int32_t>(env, o.Get("pageTable"), napi_int32_array, "request.pageTable", "an Int32Array");
  r.lengths = copy_host_array<std::int32_t>(env, o.Get("lengths"), napi_int32_array, "request.lengths", "an Int32Array");
  if (r.lengths.size() != static_cast<std::size_t>(r.batch)) fields::bad(env, "shape", "lengths", "must hold one length per batch row");
  if (r.pageTable.size() != static_cast<std::size_t>(r.batch) * r.tableStride) fields::bad(env, "shape", "pageTable", "must hold batch x tableStride pages");
  for (int b = 0; b < r.batch; b++) {
    const int L = r.lengths[b];
    if (L < r.m || static_cast<long long>(L) > static_cast<long long>(r.tableStride) * pool.pageSize) fields::bad(env, "shape", "lengths", "must be in m..tableStride x pageSize");
    for (int J = 0; J < (L + pool.pageSize - 1) / pool.pageSize; J++) {
      const std::int32_t page = r.pageTable[static_cast<std::size_t>(b) * r.tableStride + J];
      if (page < 0 || page >= pool.pages) fields::bad(env, "shape", "pageTable", "names a page outside the pool");
    }
  }
  r.scale = static_cast<float>(fields::number(env, o, "scale"));
  if (!std::isfinite(r.scale)) fields::bad(env, "option", "scale", "must be finite in float32");
  r.windowLeft = fields::integer(env, o, "windowLeft", -1, 0x7fffffff);
  r.windowRight = fields::integer(env, o, "windowRight", -1, 0x7fffffff);
  r.globalTokens = fields::integer(env, o, "globalTokens", 0, 0x7fffffff);
  r.sparse = fields::flag(o, "sparse");
  r.choice = fields::integer(env, o, "choice", 0, 3);
  r.choiceValue = fields::number(env, o, "choiceValue");
  if (r.choiceValue < 0 || (r.choice != 2 && r.choiceValue > 1)) fields::bad(env, "option", "choiceValue", "must be a ratio or tau in [0, 1], or a page count");
  r.minBlocks = fields::integer(env, o, "minBlocks", 0, 0x7fffffff);
  r.maxBlocks = fields::integer(env, o, "maxBlocks", r.minBlocks, 0x7fffffff);
  r.estimate = fields::integer(env, o, "estimate", 0, 2);
  r.shareAcrossGroup = fields::flag(o, "shareAcrossGroup");
  r.topK = fields::integer(env, o, "topK", 0, 0x7fffffff);
  r.topKRatio = fields::number(env, o, "topKRatio");
  if (r.topKRatio < 0 || r.topKRatio > 1) fields::bad(env, "option", "topKRatio", "must be in [0, 1]");
  if (r.choice != 0 && !r.sparse) fields::bad(env, "option", "sparse", "must be set with a page selection");
  const Napi::Value poly = o.Get("polyCoefficients");
  if (!poly.IsUndefined() && !poly.IsNull()) {
    const std::vector<float> c = copy_host_array<float>(env, poly, napi_float32_array, "request.polyCoefficients", "a Float32Array");
    if (c.size() < 2 || c.size() > 9) fields::bad(env, "option", "polyCoefficients", "must hold 2..9 values");
    for (float x : c) {
      if (!std::isfinite(x)) fields::bad(env, "value", "polyCoefficients", "must be finite");
    }
    r.polyDegree = static_cast<int>(c.size()) - 1;
    std::copy(c.begin(), c.end(), r.polyCoefficients);
  }
  r.returnLse = fields::flag(o, "returnLse");
  r.returnPages = fields::flag(o, "returnPages");
  return r;
}

Napi::Int32Array int_array(Napi::Env env, const std::vector<std::int32_t>& v) {
  Napi::Int32Array a = Napi::Int32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, gpu::DecodeRequest request, PoolShares pool, SharedMemory q, SharedMemory workspace)
      : PromiseWorker(env, "psa:decode"), request_(std::move(request)), pool_(std::move(pool)), q_(std::move(q)), workspace_(std::move(workspace)) {}
  ~DecodeWorker() override {
    gpu::free_buffer(result_.workspace);
    gpu::free_buffer(result_.output);
    gpu::free_buffer(result_.lse);
  }

 protected:
  gpu::Status Run() override { return gpu::run_decode(request_, workspace_ ? workspace_->buffer() : gpu::Buffer{}, result_); }
  Napi::Value Result(Napi::Env env) override {
    const std::size_t rows = static_cast<std::size_t>(request_.batch) * request_.heads * request_.m;
    Napi::Object out = Napi::Object::New(env);
    out.Set("kept", int_array(env, result_.kept));
    out.Set("visited", int_array(env, result_.visited));
    Napi::Float32Array dropped = Napi::Float32Array::New(env, rows);
    std::copy(result_.dropped.begin(), result_.dropped.end(), dropped.Data());
    out.Set("dropped", dropped);
    out.Set("pagesRead", static_cast<double>(result_.pagesRead));
    out.Set("maxPages", result_.maxPages);
    if (request_.returnPages) {
      Napi::Uint8Array flags = Napi::Uint8Array::New(env, result_.pageFlags.size());
      std::copy(result_.pageFlags.begin(), result_.pageFlags.end(), flags.Data());
      out.Set("pageFlags", flags);
    }
    out.Set("output", DeviceTensor::Wrap(env, adopt(result_.output), gpu::DType::F32, rows * request_.pool.headDim));
    if (result_.lse.ptr) out.Set("lse", DeviceTensor::Wrap(env, adopt(result_.lse), gpu::DType::F32, rows));
    if (result_.workspace.ptr) out.Set("workspace", DeviceTensor::Wrap(env, adopt(result_.workspace), gpu::DType::F32, result_.workspace.bytes / 4));
    return out;
  }

 private:
  gpu::DecodeRequest request_;
  PoolShares pool_;
  SharedMemory q_;
  SharedMemory workspace_;  // the cache's step workspace, or none yet
  gpu::DecodeResult result_;
};

class MergeWorker : public PromiseWorker {
 public:
  MergeWorker(Napi::Env env, std::vector<SharedMemory> parts, long long rows, int headDim)
      : PromiseWorker(env, "psa:mergeAttention"), parts_(std::move(parts)), rows_(rows), headDim_(headDim) {}
  ~MergeWorker() override {
    gpu::free_buffer(output_);
    gpu::free_buffer(lse_);
  }

 protected:
  gpu::Status Run() override {
    std::vector<gpu::Buffer> outputs, lses;
    for (std::size_t i = 0; i < parts_.size(); i += 2) {
      outputs.push_back(parts_[i]->buffer());
      lses.push_back(parts_[i + 1]->buffer());
    }
    return gpu::run_merge(outputs, lses, rows_, headDim_, output_, lse_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("output", DeviceTensor::Wrap(env, adopt(output_), gpu::DType::F32, static_cast<std::size_t>(rows_) * headDim_));
    out.Set("lse", DeviceTensor::Wrap(env, adopt(lse_), gpu::DType::F32, static_cast<std::size_t>(rows_)));
    return out;
  }

 private:
  std::vector<SharedMemory> parts_;  // output, lse of each part
  long long rows_;
  int headDim_;
  gpu::Buffer output_, lse_;
};

}  // namespace

Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object o = fields::object(env, info[4], "the decode request");
  PoolShares pool = pool_of(env, info[1], info[2], info[3], o);
  gpu::DecodeRequest r = parse(env, o, pool.view);
  const DeviceTensor& q = DeviceTensor::from(env, info[0], "q");
  const double expected = static_cast<double>(r.batch) * r.heads * r.m * pool.view.headDim;
  if (static_cast<double>(q.count()) != expected) AddonState::of(env).raise(env, "shape", "q", "q holds " + std::to_string(q.count()) + " elements, the step needs " + std::to_string(static_cast<long long>(expected)));
  if (q.type() != gpu::DType::F32 && q.type() != pool.view.type) AddonState::of(env).raise(env, "dtype", "q", "q must be float32 or the cache's dtype");
  if (q.memory()->buffer().device != pool.view.keys.device) AddonState::of(env).raise(env, "option", "q", "q must be on the cache's device");
  r.q = q.memory()->buffer();
  r.qType = q.type();
  SharedMemory qMem = q.memory();
  SharedMemory workspace;
  if (!info[5].IsUndefined() && !info[5].IsNull()) {
    const DeviceTensor& w = DeviceTensor::from(env, info[5], "workspace");
    if (w.memory()->buffer().device != pool.view.keys.device) AddonState::of(env).raise(env, "option", "workspace", "the step workspace must be on the cache's device");
    workspace = w.memory();
  }
  return PromiseWorker::Start(std::make_unique<DecodeWorker>(env, std::move(r), std::move(pool), std::move(qMem), std::move(workspace)));
}

// mergeAttention([output tensors], [lse tensors], headDim)
Napi::Value MergeAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const AddonState& state = AddonState::of(env);
  if (!info[0].IsArray() || !info[1].IsArray()) state.raise(env, "option", "parts", "mergeAttention needs arrays of output and lse tensors");
  const Napi::Array outs = info[0].As<Napi::Array>(), lses = info[1].As<Napi::Array>();
  if (outs.Length() == 0 || outs.Length() != lses.Length()) state.raise(env, "option", "parts", "mergeAttention needs as many lse tensors as outputs, at least one");
  const Napi::Value hd = info[2];
  const double headDim = hd.IsNumber() ? hd.As<Napi::Number>().DoubleValue() : 0;
  if (!(headDim >= 1 && headDim <= 65536 && headDim == std::floor(headDim))) state.raise(env, "shape", "headDim", "headDim must be a positive integer");
  std::vector<SharedMemory> parts;
  long long rows = -1;
  int device = -1;
  for (uint32_t i = 0; i < outs.Length(); i++) {
    const std::string name = "parts[" + std::to_string(i) + "]";
    const DeviceTensor& o = DeviceTensor::from(env, outs.Get(i), name + ".output");
    const DeviceTensor& l = DeviceTensor::from(env, lses.Get(i), name + ".lse");
    if (o.type() != gpu::DType::F32 || l.type() != gpu::DType::F32) state.raise(env, "dtype", name, name + " must hold float32 tensors");
    if (rows < 0) rows = static_cast<long long>(l.count());
    if (static_cast<long long>(l.count()) != rows || static_cast<double>(o.count()) != static_cast<double>(rows) * headDim || rows < 1) {
      state.raise(env, "shape", name, name + " must hold " + std::to_string(rows) + " rows of " + std::to_string(static_cast<int>(headDim)));
    }
    if (device < 0) device = o.memory()->buffer().device;
    if (o.memory()->buffer().device != device || l.memory()->buffer().device != device) state.raise(env, "option", name, "every part must be on one device");
    parts.push_back(o.memory());
    parts.push_back(l.memory());
  }
  return PromiseWorker::Start(std::make_unique<MergeWorker>(env, std::move(parts), rows, static_cast<int>(headDim)));
}

}  // namespace psa::binding
