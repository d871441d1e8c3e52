// lib/backends/cpu-decode.ts resolves and validates every option; this file checks that the
// request fits the cache's arrays (no read can leave them), copies q and the page tables, and
// runs cpu/decode.cc off the event loop. The cache's pages and metadata are read in place (the
// worker holds references on their arrays): an append during the step writes only slots past
// the lengths taken here and the metadata of partial last pages, which are copied here; a free
// returns the pages a step reads to the pool only once the step is done (lib/kv-cache.ts).
// No math here.
#include "cpu_decode.h"

#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/decode.h"
#include "addon_state.h"
#include "guard.h"
#include "host_array.h"
#include "promise_worker.h"
#include "request_fields.h"

namespace psa::binding {
namespace {

using fields::bad;
using fields::integer;
using fields::number;
using fields::whole;

constexpr long long kMaxSafe = fields::kMaxSafeInteger;

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
  const Napi::Object c = fields::object(env, info[1], "the host cache", "cache");
  const Napi::Object o = fields::object(env, info[2], "the cpu decode request");
  cpu::PagedCache cache;
  cache.kvHeads = integer(env, c, "kvHeads", 1, 65535, "shape", "cache");
  cache.pageSize = integer(env, c, "pageSize", 1, 65535, "shape", "cache");
  cache.headDim = integer(env, c, "headDim", 1, 256, "shape", "cache");
  std::size_t nKeys = 0, nValues = 0, nMeta[4] = {0, 0, 0, 0};
  cache.keys = view_host_array<float>(env, c.Get("keys"), napi_float32_array, "cache.keys", "a Float32Array", nKeys);
  cache.values = view_host_array<float>(env, c.Get("values"), napi_float32_array, "cache.values", "a Float32Array", nValues);
  const double** meta[4] = {&cache.kMin, &cache.kMax, &cache.kSum, &cache.kSumSq};
  const char* metaNames[4] = {"min", "max", "sum", "sumSq"};
  for (int i = 0; i < 4; i++) *meta[i] = view_host_array<double>(env, c.Get(metaNames[i]), napi_float64_array, std::string("cache.") + metaNames[i], "a Float64Array", nMeta[i]);
  const std::size_t pageFloats = static_cast<std::size_t>(cache.kvHeads) * cache.pageSize * cache.headDim;
  const std::size_t poolPages = nKeys / pageFloats;
  if (nKeys != poolPages * pageFloats) bad(env, "shape", "keys", "must hold whole pages of kvHeads x pageSize x headDim", "cache");
  if (nValues != nKeys) bad(env, "shape", "values", "must hold as many floats as keys", "cache");
  for (int i = 0; i < 4; i++) {
    if (nMeta[i] != poolPages * cache.kvHeads * cache.headDim) bad(env, "shape", metaNames[i], "must cover every page (pages x kvHeads x headDim)", "cache");
  }

  cpu::DecodeProblem p;
  p.kvHeads = cache.kvHeads;
  p.headDim = cache.headDim;
  p.heads = integer(env, o, "heads", 1, 65535, "shape");
  if (p.heads % p.kvHeads) bad(env, "shape", "heads", "must be a multiple of the cache's kvHeads");
  p.m = integer(env, o, "m", 1, INT_MAX, "shape");
  p.scale = number(env, o, "scale");
  p.windowLeft = whole(env, o, "windowLeft", -1, kMaxSafe);
  p.windowRight = whole(env, o, "windowRight", -1, kMaxSafe);
  p.globalTokens = whole(env, o, "globalTokens", 0, kMaxSafe);
  p.rule = static_cast<cpu::PageRule>(integer(env, o, "rule", 0, 3));
  p.estimate = static_cast<cpu::PageEstimate>(integer(env, o, "estimate", 0, 2));
  p.ruleValue = number(env, o, "ruleValue");
  p.minPages = whole(env, o, "minPages", 0, kMaxSafe);
  p.maxPages = whole(env, o, "maxPages", 0, kMaxSafe);
  p.shareAcrossGroup = fields::flag(o, "shareAcrossGroup");
  p.topKCount = whole(env, o, "topK", 0, kMaxSafe);
  p.topKRatio = number(env, o, "topKRatio");
  if (p.topKRatio < 0 || p.topKRatio > 1) bad(env, "option", "topKRatio", "must be in [0, 1]");
  p.topK = p.topKCount > 0 ? cpu::DecodeTopK::Count : p.topKRatio > 0 ? cpu::DecodeTopK::Ratio : cpu::DecodeTopK::None;
  const Napi::Value poly = o.Get("polyCoefficients");
  if (poly.IsTypedArray()) {
    p.polyCoefficients = copy_host_array<float>(env, poly, napi_float32_array, "request.polyCoefficients", "a Float32Array");
    if (p.polyCoefficients.size() < 2 || p.polyCoefficients.size() > 9) bad(env, "option", "polyCoefficients", "must hold 2..9 values");
  }
  const int threads = integer(env, o, "threads", 1, 1024);

  // Sequences: every page a row can read must be a page of the pool.
  std::size_t batch = 0;
  const std::int32_t* lengths = view_host_array<std::int32_t>(env, o.Get("lengths"), napi_int32_array, "request.lengths", "an Int32Array", batch);
  const Napi::Value tablesValue = o.Get("pageTables");
  if (batch == 0) bad(env, "shape", "lengths", "must hold one length per sequence, at least one");
  if (!tablesValue.IsArray() || tablesValue.As<Napi::Array>().Length() != batch) bad(env, "shape", "pageTables", "must hold one Int32Array per sequence");
  std::vector<std::vector<std::int32_t>> tables(batch);
  for (std::size_t b = 0; b < batch; b++) {
    const long long L = lengths[b];
    if (L < p.m) bad(env, "shape", "lengths", "must be at least m for every sequence (sequence " + std::to_string(b) + " holds " + std::to_string(L) + ")");
    std::size_t n = 0;
    const std::int32_t* t = view_host_array<std::int32_t>(env, tablesValue.As<Napi::Array>().Get(static_cast<std::uint32_t>(b)), napi_int32_array, "request.pageTables", "an Int32Array", n);
    const std::size_t used = static_cast<std::size_t>((L + cache.pageSize - 1) / cache.pageSize);
    if (n < used) bad(env, "shape", "pageTables", "entry " + std::to_string(b) + " is shorter than its sequence");
    for (std::size_t J = 0; J < used; J++) {
      if (t[J] < 0 || static_cast<std::size_t>(t[J]) >= poolPages) bad(env, "shape", "pageTables", "entry " + std::to_string(b) + " names a page outside the pool");
    }
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
  std::vector<float> qCopy = copy_host_array<float>(env, info[0], napi_float32_array, "q", "a Float32Array");
  if (qCopy.size() != fields::product(env, "m", {static_cast<long long>(batch), p.heads, p.m, p.headDim})) {
    AddonState::of(env).raise(env, "shape", "q", "q does not fit [batch, heads, m, headDim]");
  }

  std::vector<Napi::Reference<Napi::Value>> holds;
  for (const char* key : {"keys", "values", "min", "max", "sum", "sumSq"}) holds.push_back(Napi::Persistent(c.Get(key)));
  auto worker = std::make_unique<DecodeWorker>(env, std::move(p), std::move(qCopy), cache, std::move(tables), std::move(holds), fields::flag(o, "returnLse"),
                                               fields::flag(o, "returnPages"), threads);
  return PromiseWorker::Start(std::move(worker));
}

}  // namespace

void RegisterCpuDecode(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuDecode", Napi::Function::New<Guarded<CpuDecode>>(env, "cpuDecode"));
}

}  // namespace psa::binding
