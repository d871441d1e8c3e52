// lib/backends/cpu.ts resolves and validates every option and hands over the request of
// binding/attention.cc (without `compute`, with `threads`); this file copies the inputs (the
// call computes from what was checked, whatever JS does with its arrays meanwhile), runs
// cpu/ off the event loop, and wraps what comes back. No math here.
#include "cpu_attention.h"

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
#include "promise_worker.h"

namespace psa::binding {
namespace {

[[noreturn]] void bad(Napi::Env env, const std::string& what, const std::string& argument = "request") {
  AddonState::of(env).raise(env, "shape", argument, "cpu request: " + what);
}

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
std::vector<T> copy_typed(Napi::Env env, const Napi::Value& v, napi_typedarray_type type, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) bad(env, name + " has the wrong type", name);
  const Napi::TypedArray a = v.As<Napi::TypedArray>();
  const T* data = reinterpret_cast<const T*>(static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(data, data + a.ElementLength());
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
  if (!value.IsObject()) bad(env, "the request must be an object");
  const Napi::Object o = value.As<Napi::Object>();
  Request r;
  cpu::Problem& p = r.problem;
  p.batch = integer(env, o, "batch");
  p.heads = integer(env, o, "heads");
  p.kvHeads = integer(env, o, "kvHeads");
  p.seqQ = integer(env, o, "seqQ");
  p.seqK = integer(env, o, "seqK");
  p.headDim = integer(env, o, "headDim");
  if (p.batch < 1 || p.heads < 1 || p.kvHeads < 1 || p.heads % p.kvHeads || p.seqQ < 1 || p.seqK < 1 || p.headDim < 1) bad(env, "bad shape");
  p.bnhd = flag(o, "bnhd");
  p.scale = number(env, o, "scale");
  p.mask = cpu::MaskSpec{p.seqQ, p.seqK, flag(o, "causal"), integer(env, o, "windowLeft"), integer(env, o, "windowRight"), integer(env, o, "globalTokens")};
  r.blockSize = integer(env, o, "blockSize");
  if (r.blockSize < 16 || r.blockSize > 256 || r.blockSize % 16) bad(env, "blockSize must be a multiple of 16 in 16..256");
  r.queryBlockSize = integer(env, o, "queryBlockSize");
  if (r.queryBlockSize < 1 || r.queryBlockSize > 256) bad(env, "queryBlockSize must be in 1..256");
  r.sparse = flag(o, "sparse");
  const Napi::Value layout = o.Get("layout");
  if (layout.IsObject()) {
    const Napi::Object l = layout.As<Napi::Object>();
    r.hasLayout = true;
    r.layout.blockSize = r.blockSize;
    r.layout.queryBlockSize = r.queryBlockSize;
    r.layout.offsets = copy_typed<std::int32_t>(env, l.Get("offsets"), napi_int32_array, "layout.offsets");
    r.layout.indices = copy_typed<std::int32_t>(env, l.Get("indices"), napi_int32_array, "layout.indices");
    r.layout.flags = copy_typed<std::uint8_t>(env, l.Get("flags"), napi_uint8_array, "layout.flags");
    const std::size_t rows = static_cast<std::size_t>(p.batch) * p.heads * p.numQueryBlocks(r.queryBlockSize);
    if (r.layout.offsets.size() != rows + 1 || r.layout.flags.size() != r.layout.indices.size()) bad(env, "the layout does not fit the shape");
  }
  const int choice = integer(env, o, "choice");
  if (choice < 0 || choice > 3) bad(env, "choice must be 0..3");
  r.hasSelection = choice != 0;
  r.selection.mode = choice == 1 ? cpu::SelectionMode::Ratio : choice == 2 ? cpu::SelectionMode::TopBlocks : cpu::SelectionMode::Progressive;
  r.selection.value = number(env, o, "choiceValue");
  r.selection.minBlocks = integer(env, o, "minBlocks");
  r.selection.maxBlocks = integer(env, o, "maxBlocks");
  r.selection.estimate = flag(o, "boundEstimate") ? cpu::Estimate::Bound : flag(o, "momentEstimate") ? cpu::Estimate::Moment : cpu::Estimate::Mean;
  r.selection.shareAcrossGroup = flag(o, "shareAcrossGroup");
  const int topK = integer(env, o, "topK");
  const double topKRatio = number(env, o, "topKRatio");
  p.topK = topK > 0 ? cpu::TopKKind::Count : topKRatio > 0 ? cpu::TopKKind::Ratio : cpu::TopKKind::None;
  p.topKCount = topK;
  p.topKRatio = topKRatio;
  const Napi::Value poly = o.Get("polyCoefficients");
  if (poly.IsTypedArray()) {
    p.polyCoefficients = copy_typed<float>(env, poly, napi_float32_array, "polyCoefficients");
    if (p.polyCoefficients.size() < 2 || p.polyCoefficients.size() > 9) bad(env, "polyCoefficients must hold 2..9 values");
  }
  r.returnLse = flag(o, "returnLse");
  r.returnThresholds = flag(o, "returnThresholds");
  r.threads = integer(env, o, "threads");
  if (r.threads < 1) bad(env, "threads must be at least 1");
  return r;
}

std::vector<float> copy_input(Napi::Env env, const Napi::Value& v, std::size_t expected, const char* name) {
  std::vector<float> x = copy_typed<float>(env, v, napi_float32_array, name);
  if (x.size() != expected) bad(env, std::string(name) + " holds " + std::to_string(x.size()) + " floats, the shape needs " + std::to_string(expected), name);
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
  const int queryBlockSize = integer(env, info[4].As<Napi::Object>(), "queryBlockSize");
  if (queryBlockSize < 1 || queryBlockSize > 256) bad(env, "queryBlockSize must be in 1..256");
  if (r.hasLayout || r.hasSelection) bad(env, "the backward takes the forward's layout in `saved`");
  if (!info[5].IsObject()) bad(env, "saved must be an object", "saved");
  const Napi::Object saved = info[5].As<Napi::Object>();
  const Napi::Value layout = saved.Get("layout");
  if (layout.IsObject()) {
    const Napi::Object l = layout.As<Napi::Object>();
    r.hasLayout = true;
    r.layout.blockSize = r.blockSize;
    r.layout.offsets = copy_typed<std::int32_t>(env, l.Get("offsets"), napi_int32_array, "layout.offsets");
    r.layout.indices = copy_typed<std::int32_t>(env, l.Get("indices"), napi_int32_array, "layout.indices");
    r.layout.flags = copy_typed<std::uint8_t>(env, l.Get("flags"), napi_uint8_array, "layout.flags");
    const std::size_t rows = static_cast<std::size_t>(r.problem.batch) * r.problem.heads * ((r.problem.seqQ + queryBlockSize - 1) / queryBlockSize);
    if (r.layout.offsets.size() != rows + 1 || r.layout.flags.size() != r.layout.indices.size()) bad(env, "the layout does not fit the shape and queryBlockSize");
  } else if (queryBlockSize != r.blockSize) {
    bad(env, "without a layout, queryBlockSize must be blockSize");
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
