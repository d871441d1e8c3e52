// lib/backends/cpu-decode.ts resolves and validates every option; this file checks that the
// request fits the cache's arrays (no read can leave them), copies q and the page tables, and
// runs cpu/decode.cc off the event loop. The cache's pages and metadata are read in place (the
// worker holds references on their arrays): an append during the step writes only slots past
// the lengths taken here and the metadata of partial last pages, which are copied here; a free
// returns the pages a step reads to the pool only once the step is done (lib/kv-cache.ts).
// No math here.
#include "cpu_decode.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/decode.h"
#include "addon_state.h"
#include "guard.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

[[noreturn]] void bad(Napi::Env env, const std::string& what, const std::string& argument = "request") {
  AddonState::of(env).raise(env, "shape", argument, "cpu decode request: " + what);
}

double number(Napi::Env env, const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) bad(env, std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

long long integer(Napi::Env env, const Napi::Object& o, const char* key) {
  const double d = number(env, o, key);
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<long long>(d))) bad(env, std::string(key) + " must be an integer");
  return static_cast<long long>(d);
}

template <typename T>
const T* typed(Napi::Env env, const Napi::Value& v, napi_typedarray_type type, std::size_t& length, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) bad(env, name + " has the wrong type", name);
  const Napi::TypedArray a = v.As<Napi::TypedArray>();
  length = a.ElementLength();
  return reinterpret_cast<const T*>(static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, cpu::DecodeProblem p, std::vector<float> q, cpu::PagedCache cache, std::vector<std::vector<std::int32_t>> tables,
               std::vector<Napi::Reference<Napi::Value>> holds, bool returnLse, bool returnPages, int threads)
      : PromiseWorker(env, "psa:cpu-decode"), p_(std::move(p)), q_(std::move(q)), cache_(cache), tables_(std::move(tables)), holds_(std::move(holds)),
        returnLse_(returnLse), threads_(threads) {
    for (const auto& t : tables_) p_.pageTables.push_back(t.data());
    result_.wantPages = returnPages;
  }

 protected:
  bool usesDevice() const override { return false; }
  Napi::Value Failure(Napi::Env env, const gpu::Status& status) override {
    const AddonState& state = AddonState::of(env);
    if (status.name == "cudaErrorMemoryAllocation") return state.make_error(env, "oom", "", "the cpu decode could not allocate its working memory");
    return state.make_error(env, "internal", "", "the cpu decode failed: " + status.message);
  }
  gpu::Status Run() override {
    const std::size_t rows = p_.lengths.size() * static_cast<std::size_t>(p_.heads) * p_.m;
    output_.resize(rows * p_.headDim);
    if (returnLse_) lse_.resize(rows);
    result_.output = output_.data();
    result_.lse = returnLse_ ? lse_.data() : nullptr;
    cpu::decode(p_, q_.data(), cache_, result_, threads_);
    return gpu::Status::success();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    Napi::Float32Array o = Napi::Float32Array::New(env, output_.size());
    std::memcpy(o.Data(), output_.data(), output_.size() * sizeof(float));
    out.Set("output", o);
    if (returnLse_) {
      Napi::Float32Array l = Napi::Float32Array::New(env, lse_.size());
      std::memcpy(l.Data(), lse_.data(), lse_.size() * sizeof(float));
      out.Set("lse", l);
    }
    if (result_.wantPages) {
      Napi::Array pages = Napi::Array::New(env, result_.pages.size());
      for (std::size_t r = 0; r < result_.pages.size(); r++) {
        Napi::Int32Array a = Napi::Int32Array::New(env, result_.pages[r].size());
        if (!result_.pages[r].empty()) std::memcpy(a.Data(), result_.pages[r].data(), result_.pages[r].size() * sizeof(std::int32_t));
        pages.Set(static_cast<std::uint32_t>(r), a);
      }
      out.Set("pages", pages);
    }
    const auto& r = result_;
    for (const auto& [key, value] : {std::pair{"keptPairs", r.keptPairs}, {"allowedPairs", r.allowedPairs}, {"pagesVisited", r.pagesVisited}, {"pagesDense", r.pagesDense},
                                     {"pagesRead", r.pagesRead}, {"pagesReadDense", r.pagesReadDense}, {"emptyRows", r.emptyRows}}) {
      out.Set(key, static_cast<double>(value));
    }
    out.Set("droppedMax", r.droppedMax);
    out.Set("droppedMean", r.droppedMean);
    return out;
  }

 private:
  cpu::DecodeProblem p_;
  std::vector<float> q_;
  cpu::PagedCache cache_;
  std::vector<std::vector<std::int32_t>> tables_;
  std::vector<Napi::Reference<Napi::Value>> holds_;  // the cache's arrays, alive until completion
  std::vector<float> output_, lse_;
  cpu::DecodeResult result_;
  bool returnLse_;
  int threads_;
};

// cpuDecode(q, cache, request): cache { keys, values, min, max, sum, sumSq, kvHeads, pageSize,
// headDim }, request { heads, m, scale, windowLeft, windowRight, globalTokens, rule 0..3,
// ruleValue, minPages, maxPages, estimate 0..2, shareAcrossGroup, topK, topKRatio,
// polyCoefficients?, returnLse, returnPages, threads, lengths Int32Array, pageTables Int32Array[] }.
Napi::Value CpuDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[1].IsObject() || !info[2].IsObject()) bad(env, "cache and request must be objects");
  const Napi::Object c = info[1].As<Napi::Object>();
  const Napi::Object o = info[2].As<Napi::Object>();
  cpu::PagedCache cache;
  cache.kvHeads = static_cast<int>(integer(env, c, "kvHeads"));
  cache.pageSize = static_cast<int>(integer(env, c, "pageSize"));
  cache.headDim = static_cast<int>(integer(env, c, "headDim"));
  if (cache.kvHeads < 1 || cache.pageSize < 1 || cache.headDim < 1 || cache.headDim > 256) bad(env, "bad cache geometry");
  std::size_t nKeys = 0, nValues = 0, nMeta[4] = {0, 0, 0, 0};
  cache.keys = typed<float>(env, c.Get("keys"), napi_float32_array, nKeys, "cache.keys");
  cache.values = typed<float>(env, c.Get("values"), napi_float32_array, nValues, "cache.values");
  const double** meta[4] = {&cache.kMin, &cache.kMax, &cache.kSum, &cache.kSumSq};
  const char* metaNames[4] = {"min", "max", "sum", "sumSq"};
  for (int i = 0; i < 4; i++) *meta[i] = typed<double>(env, c.Get(metaNames[i]), napi_float64_array, nMeta[i], std::string("cache.") + metaNames[i]);
  const std::size_t pageFloats = static_cast<std::size_t>(cache.kvHeads) * cache.pageSize * cache.headDim;
  const std::size_t poolPages = nKeys / pageFloats;
  if (nKeys != poolPages * pageFloats || nValues != nKeys) bad(env, "cache keys and values must hold whole pages");
  for (std::size_t n : nMeta) if (n != poolPages * cache.kvHeads * cache.headDim) bad(env, "cache metadata must cover every page");

  cpu::DecodeProblem p;
  p.kvHeads = cache.kvHeads;
  p.headDim = cache.headDim;
  p.heads = static_cast<int>(integer(env, o, "heads"));
  p.m = static_cast<int>(integer(env, o, "m"));
  if (p.heads < 1 || p.heads % p.kvHeads || p.m < 1) bad(env, "bad heads or m");
  p.scale = number(env, o, "scale");
  p.windowLeft = integer(env, o, "windowLeft");
  p.windowRight = integer(env, o, "windowRight");
  p.globalTokens = integer(env, o, "globalTokens");
  const long long rule = integer(env, o, "rule");
  const long long estimate = integer(env, o, "estimate");
  if (rule < 0 || rule > 3 || estimate < 0 || estimate > 2) bad(env, "rule must be 0..3 and estimate 0..2");
  p.rule = static_cast<cpu::PageRule>(rule);
  p.estimate = static_cast<cpu::PageEstimate>(estimate);
  p.ruleValue = number(env, o, "ruleValue");
  p.minPages = integer(env, o, "minPages");
  p.maxPages = integer(env, o, "maxPages");
  p.shareAcrossGroup = o.Get("shareAcrossGroup").ToBoolean().Value();
  p.topKCount = integer(env, o, "topK");
  p.topKRatio = number(env, o, "topKRatio");
  p.topK = p.topKCount > 0 ? cpu::DecodeTopK::Count : p.topKRatio > 0 ? cpu::DecodeTopK::Ratio : cpu::DecodeTopK::None;
  const Napi::Value poly = o.Get("polyCoefficients");
  if (poly.IsTypedArray()) {
    std::size_t n = 0;
    const float* coefficients = typed<float>(env, poly, napi_float32_array, n, "polyCoefficients");
    if (n < 2 || n > 9) bad(env, "polyCoefficients must hold 2..9 values");
    p.polyCoefficients.assign(coefficients, coefficients + n);
  }
  const int threads = static_cast<int>(integer(env, o, "threads"));
  if (threads < 1) bad(env, "threads must be at least 1");

  // Sequences: every page a row can read must be a page of the pool.
  std::size_t batch = 0;
  const std::int32_t* lengths = typed<std::int32_t>(env, o.Get("lengths"), napi_int32_array, batch, "lengths");
  const Napi::Value tablesValue = o.Get("pageTables");
  if (!tablesValue.IsArray() || tablesValue.As<Napi::Array>().Length() != batch || batch == 0) bad(env, "pageTables must hold one Int32Array per sequence");
  std::vector<std::vector<std::int32_t>> tables(batch);
  for (std::size_t b = 0; b < batch; b++) {
    const long long L = lengths[b];
    if (L < p.m) bad(env, "a sequence holds fewer tokens than m");
    std::size_t n = 0;
    const std::int32_t* t = typed<std::int32_t>(env, tablesValue.As<Napi::Array>().Get(static_cast<std::uint32_t>(b)), napi_int32_array, n, "pageTables");
    const std::size_t used = static_cast<std::size_t>((L + cache.pageSize - 1) / cache.pageSize);
    if (n < used) bad(env, "a page table is shorter than its sequence");
    for (std::size_t J = 0; J < used; J++) if (t[J] < 0 || static_cast<std::size_t>(t[J]) >= poolPages) bad(env, "a page table names a page outside the pool");
    tables[b].assign(t, t + used);
    p.lengths.push_back(static_cast<int>(L));
    // A partial last page: its metadata now, since an append during the step may change it.
    std::vector<double> snap;
    if (L % cache.pageSize != 0) {
      const std::size_t plane = static_cast<std::size_t>(cache.kvHeads) * cache.headDim;
      const std::size_t at = static_cast<std::size_t>(t[used - 1]) * plane;
      for (const double* m : {cache.kMin, cache.kMax, cache.kSum, cache.kSumSq}) snap.insert(snap.end(), m + at, m + at + plane);
    }
    p.lastPageMeta.push_back(std::move(snap));
  }
  std::size_t nq = 0;
  const float* q = typed<float>(env, info[0], napi_float32_array, nq, "q");
  if (nq != batch * static_cast<std::size_t>(p.heads) * p.m * p.headDim) bad(env, "q does not fit [batch, heads, m, headDim]", "q");
  std::vector<float> qCopy(q, q + nq);

  std::vector<Napi::Reference<Napi::Value>> holds;
  for (const char* key : {"keys", "values", "min", "max", "sum", "sumSq"}) holds.push_back(Napi::Persistent(c.Get(key)));
  auto worker = std::make_unique<DecodeWorker>(env, std::move(p), std::move(qCopy), cache, std::move(tables), std::move(holds), o.Get("returnLse").ToBoolean().Value(),
                                               o.Get("returnPages").ToBoolean().Value(), threads);
  return PromiseWorker::Start(std::move(worker));
}

}  // namespace

void RegisterCpuDecode(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuDecode", Napi::Function::New<Guarded<CpuDecode>>(env, "cpuDecode"));
}

}  // namespace psa::binding
