// lib/backends/cpu.ts resolves and validates every option and hands over the request of
// binding/attention.cc (without `compute`, with `threads`); this file copies the inputs (the
// call computes from what was checked, whatever JS does with its arrays meanwhile), runs
// cpu/ off the event loop, and wraps what comes back. No math here.
#include "cpu_attention.h"

#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/backward.h"
#include "../cpu/forward.h"
#include "../cpu/kernels.h"
#include "../cpu/layout.h"
#include "../cpu/select.h"
#include "../cpu/thread_pool.h"
#include "addon_state.h"
#include "guard.h"
#include "host_array.h"
#include "layout_fields.h"
#include "promise_worker.h"
#include "request_fields.h"

namespace psa::binding {
namespace {

using fields::bad;
using fields::flag;
using fields::integer;
using fields::number;

constexpr int kMaxInt = INT_MAX;

// A layout handed over for the problem (`owner`.layout), copied and checked against its geometry.
cpu::BlockLayout read_layout(Napi::Env env, const Napi::Object& l, const cpu::Problem& p, int blockSize, int queryBlockSize, const char* owner) {
  const std::size_t rows = fields::product(env, "layout", {p.batch, p.heads, (p.seqQ + queryBlockSize - 1) / queryBlockSize}, owner);
  fields::LayoutArrays a = fields::read_layout(env, l, rows, (p.seqK + blockSize - 1) / blockSize, owner);
  cpu::BlockLayout layout;
  layout.blockSize = blockSize;
  layout.queryBlockSize = queryBlockSize;
  layout.offsets = std::move(a.offsets);
  layout.indices = std::move(a.indices);
  layout.flags = std::move(a.flags);
  return layout;
}

struct Request {
  cpu::Problem problem;
  int blockSize = 64;
  int queryBlockSize = 64;
  bool sparse = false;
  bool hasLayout = false;
  cpu::BlockLayout layout;
  bool hasSelection = false;
  cpu::Selection selection;
  bool returnLse = false;
  bool returnThresholds = false;
  int threads = 1;
};

Request parse_request(Napi::Env env, const Napi::Value& value) {
  const Napi::Object o = fields::object(env, value, "the cpu request");
  Request r;
  cpu::Problem& p = r.problem;
  p.batch = integer(env, o, "batch", 1, kMaxInt, "shape");
  p.heads = integer(env, o, "heads", 1, kMaxInt, "shape");
  p.kvHeads = integer(env, o, "kvHeads", 1, p.heads, "shape");
  if (p.heads % p.kvHeads) bad(env, "shape", "kvHeads", "must divide heads");
  p.seqQ = integer(env, o, "seqQ", 1, kMaxInt, "shape");
  p.seqK = integer(env, o, "seqK", 1, kMaxInt, "shape");
  p.headDim = integer(env, o, "headDim", 1, kMaxInt, "shape");
  p.bnhd = flag(o, "bnhd");
  p.scale = number(env, o, "scale");
  p.mask = cpu::MaskSpec{p.seqQ, p.seqK, flag(o, "causal"), integer(env, o, "windowLeft", -1, kMaxInt), integer(env, o, "windowRight", -1, kMaxInt),
                         integer(env, o, "globalTokens", 0, kMaxInt)};
  r.blockSize = integer(env, o, "blockSize", 16, 256);
  if (r.blockSize % 16) bad(env, "option", "blockSize", "must be a multiple of 16");
  r.queryBlockSize = integer(env, o, "queryBlockSize", 1, 256);
  r.sparse = flag(o, "sparse");
  const Napi::Value layout = o.Get("layout");
  if (layout.IsObject()) {
    r.hasLayout = true;
    r.layout = read_layout(env, layout.As<Napi::Object>(), p, r.blockSize, r.queryBlockSize, "request");
  }
  const int choice = integer(env, o, "choice", 0, 3);
  r.hasSelection = choice != 0;
  r.selection.mode = choice == 1 ? cpu::SelectionMode::Ratio : choice == 2 ? cpu::SelectionMode::TopBlocks : cpu::SelectionMode::Progressive;
  r.selection.value = number(env, o, "choiceValue");
  r.selection.minBlocks = integer(env, o, "minBlocks", 0, kMaxInt);
  r.selection.maxBlocks = integer(env, o, "maxBlocks", 0, kMaxInt);
  r.selection.estimate = flag(o, "boundEstimate") ? cpu::Estimate::Bound : flag(o, "momentEstimate") ? cpu::Estimate::Moment : cpu::Estimate::Mean;
  r.selection.shareAcrossGroup = flag(o, "shareAcrossGroup");
  const int topK = integer(env, o, "topK", 0, kMaxInt);
  const double topKRatio = number(env, o, "topKRatio");
  if (topKRatio < 0 || topKRatio > 1) bad(env, "option", "topKRatio", "must be in [0, 1]");
  p.topK = topK > 0 ? cpu::TopKKind::Count : topKRatio > 0 ? cpu::TopKKind::Ratio : cpu::TopKKind::None;
  p.topKCount = topK;
  p.topKRatio = topKRatio;
  const Napi::Value poly = o.Get("polyCoefficients");
  if (poly.IsTypedArray()) {
    p.polyCoefficients = copy_host_array<float>(env, poly, napi_float32_array, "request.polyCoefficients", "a Float32Array");
    if (p.polyCoefficients.size() < 2 || p.polyCoefficients.size() > 9) bad(env, "option", "polyCoefficients", "must hold 2..9 values");
  }
  r.returnLse = flag(o, "returnLse");
  r.returnThresholds = flag(o, "returnThresholds");
  r.threads = integer(env, o, "threads", 1, 1024);
  return r;
}

std::vector<float> copy_input(Napi::Env env, const Napi::Value& v, std::size_t expected, const char* name) {
  std::vector<float> x = copy_host_array<float>(env, v, napi_float32_array, name, "a Float32Array");
  if (x.size() != expected) AddonState::of(env).raise(env, "shape", name, std::string(name) + " holds " + std::to_string(x.size()) + " floats, the shape needs " + std::to_string(expected));
  return x;
}

// The layout the problem runs on: the caller's, the selection's, window and sinks, or dense.
cpu::BlockLayout layout_for(const Request& r, const std::vector<float>& q, const std::vector<float>& k) {
  if (r.hasLayout) return r.layout;
  if (r.hasSelection) return cpu::selectBlocks(r.problem, r.blockSize, r.queryBlockSize, r.selection, q.data(), k.data(), r.threads);
  if (r.sparse) return cpu::windowSinkLayout(r.problem, r.blockSize, r.queryBlockSize);
  return cpu::denseLayout(r.problem, r.blockSize, r.queryBlockSize);
}

Napi::Object layout_object(Napi::Env env, const cpu::BlockLayout& layout) {
  Napi::Object l = Napi::Object::New(env);
  Napi::Int32Array o = Napi::Int32Array::New(env, layout.offsets.size());
  std::memcpy(o.Data(), layout.offsets.data(), layout.offsets.size() * sizeof(std::int32_t));
  Napi::Int32Array i = Napi::Int32Array::New(env, layout.indices.size());
  std::memcpy(i.Data(), layout.indices.data(), layout.indices.size() * sizeof(std::int32_t));
  Napi::Uint8Array f = Napi::Uint8Array::New(env, layout.flags.size());
  std::memcpy(f.Data(), layout.flags.data(), layout.flags.size());
  l.Set("offsets", o);
  l.Set("indices", i);
  l.Set("flags", f);
  return l;
}

// Runs on a libuv worker thread through PromiseWorker (completion that cannot throw, so a
// terminated worker_thread with cpu work in flight ends quietly); rejects with a coded error.
class CpuWorker : public PromiseWorker {
 public:
  using PromiseWorker::PromiseWorker;

 protected:
  bool usesDevice() const override { return false; }
  Napi::Value Failure(Napi::Env env, const gpu::Status& status) override {
    const AddonState& state = AddonState::of(env);
    if (status.name == "cudaErrorMemoryAllocation") return state.make_error(env, "oom", "", "the cpu backend could not allocate its working memory");
    return state.make_error(env, "internal", "", "the cpu backend failed: " + status.message);
  }
};

Napi::Float32Array float_array(Napi::Env env, const std::vector<float>& x) {
  Napi::Float32Array a = Napi::Float32Array::New(env, x.size());
  if (!x.empty()) std::memcpy(a.Data(), x.data(), x.size() * sizeof(float));
  return a;
}

class AttentionWorker : public CpuWorker {
 public:
  AttentionWorker(Napi::Env env, Request r, std::vector<float> q, std::vector<float> k, std::vector<float> v)
      : CpuWorker(env, "psa:cpu-attention"), r_(std::move(r)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)) {}

 protected:
  gpu::Status Run() override {
    const std::size_t rows = static_cast<std::size_t>(r_.problem.batch) * r_.problem.heads * r_.problem.seqQ;
    // Results stay in the worker's own memory until completion copies them into JS arrays:
    // nothing of JS is touched off the main thread, or after a worker_thread is gone.
    output_.resize(q_.size());
    if (r_.returnLse) lse_.resize(rows);
    if (r_.returnThresholds) thresholds_.resize(rows);
    result_.output = output_.data();
    result_.lse = r_.returnLse ? lse_.data() : nullptr;
    result_.thresholds = r_.returnThresholds ? thresholds_.data() : nullptr;
    layout_ = layout_for(r_, q_, k_);
    cpu::forward(r_.problem, layout_, q_.data(), k_.data(), v_.data(), result_, r_.threads, cpu::bestKernels());
    return gpu::Status::success();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("output", float_array(env, output_));
    if (r_.returnLse) out.Set("lse", float_array(env, lse_));
    if (r_.returnThresholds) out.Set("thresholds", float_array(env, thresholds_));
    if (r_.sparse && !r_.hasLayout) out.Set("layout", layout_object(env, layout_));
    out.Set("keptPairs", static_cast<double>(result_.keptPairs));
    out.Set("emptyRows", static_cast<double>(result_.emptyRows));
    return out;
  }

 private:
  Request r_;
  std::vector<float> q_, k_, v_;
  std::vector<float> output_, lse_, thresholds_;
  cpu::ForwardResult result_;
  cpu::BlockLayout layout_;
};

class LayoutWorker : public CpuWorker {
 public:
  LayoutWorker(Napi::Env env, Request r, std::vector<float> q, std::vector<float> k)
      : CpuWorker(env, "psa:cpu-layout"), r_(std::move(r)), q_(std::move(q)), k_(std::move(k)) {}

 protected:
  gpu::Status Run() override {
    layout_ = layout_for(r_, q_, k_);
    return gpu::Status::success();
  }
  Napi::Value Result(Napi::Env env) override { return layout_object(env, layout_); }

 private:
  Request r_;
  std::vector<float> q_, k_;
  cpu::BlockLayout layout_;
};

std::size_t query_elements(const cpu::Problem& p) { return static_cast<std::size_t>(p.batch) * p.heads * p.seqQ * p.headDim; }
std::size_t key_elements(const cpu::Problem& p) { return static_cast<std::size_t>(p.batch) * p.kvHeads * p.seqK * p.headDim; }

Napi::Value CpuAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Request r = parse_request(env, info[3]);
  std::vector<float> q = copy_input(env, info[0], query_elements(r.problem), "q");
  std::vector<float> k = copy_input(env, info[1], key_elements(r.problem), "k");
  std::vector<float> v = copy_input(env, info[2], key_elements(r.problem), "v");
  return PromiseWorker::Start(std::make_unique<AttentionWorker>(env, std::move(r), std::move(q), std::move(k), std::move(v)));
}

Napi::Value CpuBuildLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Request r = parse_request(env, info[2]);
  std::vector<float> q = copy_input(env, info[0], query_elements(r.problem), "q");
  std::vector<float> k = copy_input(env, info[1], key_elements(r.problem), "k");
  return PromiseWorker::Start(std::make_unique<LayoutWorker>(env, std::move(r), std::move(q), std::move(k)));
}

// { simd: 'avx512' | 'avx2+fma' | 'portable', threads: hardware threads }
Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("simd", cpu::bestKernels().name);
  out.Set("threads", cpu::ThreadPool::hardwareThreads());
  return out;
}

}  // namespace

// cpuBackward(q, k, v, dO, request, saved): request as cpuAttention's without its layout and
// selection, plus `queryBlockSize`; saved = { layout?, thresholds? }: the forward's layout
// (absent: dense) with a row per query block of queryBlockSize rows, and its top-k thresholds
// [batch, heads, seqQ]. Resolves to { dq, dk, dv }.
namespace {

class BackwardWorker : public CpuWorker {
 public:
  BackwardWorker(Napi::Env env, Request r, int queryBlockSize, std::vector<float> q, std::vector<float> k, std::vector<float> v, std::vector<float> dO,
                 std::vector<float> thresholds)
      : CpuWorker(env, "psa:cpu-backward"), r_(std::move(r)), queryBlockSize_(queryBlockSize), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)),
        dO_(std::move(dO)), thresholds_(std::move(thresholds)) {}

 protected:
  gpu::Status Run() override {
    dq_.resize(q_.size());
    dk_.resize(k_.size());
    dv_.resize(v_.size());
    const cpu::BlockLayout layout = layout_for(r_, q_, k_);
    const cpu::Kernels& kernels = cpu::bestKernels();
    cpu::backward(r_.problem, layout, queryBlockSize_,
                  cpu::BackwardInputs{q_.data(), k_.data(), v_.data(), dO_.data(), thresholds_.empty() ? nullptr : thresholds_.data()},
                  cpu::Gradients{dq_.data(), dk_.data(), dv_.data()}, r_.threads, kernels, cpu::backwardKernelsFor(kernels));
    return gpu::Status::success();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("dq", float_array(env, dq_));
    out.Set("dk", float_array(env, dk_));
    out.Set("dv", float_array(env, dv_));
    return out;
  }

 private:
  Request r_;
  int queryBlockSize_;
  std::vector<float> q_, k_, v_, dO_, thresholds_;
  std::vector<float> dq_, dk_, dv_;
};

Napi::Value CpuBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Request r = parse_request(env, info[4]);
  const int queryBlockSize = r.queryBlockSize;
  if (r.hasLayout || r.hasSelection) bad(env, "option", "layout", "must not be given: the backward takes the forward's layout in `saved`");
  const Napi::Object saved = fields::object(env, info[5], "saved", "saved");
  const Napi::Value layout = saved.Get("layout");
  if (layout.IsObject()) {
    r.hasLayout = true;
    r.layout = read_layout(env, layout.As<Napi::Object>(), r.problem, r.blockSize, queryBlockSize, "saved");
  } else if (queryBlockSize != r.blockSize) {
    bad(env, "option", "queryBlockSize", "must be blockSize without a layout");
  }
  std::vector<float> q = copy_input(env, info[0], query_elements(r.problem), "q");
  std::vector<float> k = copy_input(env, info[1], key_elements(r.problem), "k");
  std::vector<float> v = copy_input(env, info[2], key_elements(r.problem), "v");
  std::vector<float> dO = copy_input(env, info[3], query_elements(r.problem), "dO");
  std::vector<float> thresholds;
  if (!saved.Get("thresholds").IsUndefined()) {
    thresholds = copy_input(env, saved.Get("thresholds"), static_cast<std::size_t>(r.problem.batch) * r.problem.heads * r.problem.seqQ, "thresholds");
  }
  return PromiseWorker::Start(std::make_unique<BackwardWorker>(env, std::move(r), queryBlockSize, std::move(q), std::move(k), std::move(v), std::move(dO),
                                                               std::move(thresholds)));
}

}  // namespace

void RegisterCpu(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New<Guarded<CpuInfo>>(env, "cpuInfo"));
  exports.Set("cpuAttention", Napi::Function::New<Guarded<CpuAttention>>(env, "cpuAttention"));
  exports.Set("cpuBuildLayout", Napi::Function::New<Guarded<CpuBuildLayout>>(env, "cpuBuildLayout"));
  exports.Set("cpuBackward", Napi::Function::New<Guarded<CpuBackward>>(env, "cpuBackward"));
}

}  // namespace psa::binding
