// Checks the CPU forward (cpu/forward.h) against a float64 attention computed here element by
// element from the contract's definition of the allowed set, on odd sizes and every option, for
// each kernel set this CPU runs. Prints "PASS <case>" / "FAIL <case>: <why>" and "<n> failed".
// Also checks that results are bit-identical across thread counts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "forward.h"
#include "kernels.h"
#include "layout.h"
#include "select.h"
#include "thread_pool.h"

namespace {

using namespace psa::cpu;

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }
  double normal() { return std::sqrt(-2 * std::log(1 - uniform())) * std::cos(6.283185307179586 * uniform()); }
};

enum class LayoutKind { Dense, WindowSinks, Select, Random };

struct Case {
  std::string name;
  Problem p;
  int blockSize = 64;
  int queryBlockSize = 0;  // 0: blockSize
  LayoutKind kind = LayoutKind::Dense;
  Selection selection;
  bool integers = false;  // small integer inputs: exact scores, many tied ones
  double qScale = 1.0;
};

struct Oracle {
  std::vector<double> output, lse, thresholds;
  std::int64_t keptPairs = 0, emptyRows = 0;
};

bool allowedByWindowSinks(const MaskSpec& m, int i, int j) {
  const int pos = i + m.seqK - m.seqQ;
  const bool window = m.windowLeft >= 0 && j >= 1LL * pos - m.windowLeft && j <= 1LL * pos + m.windowRight;
  return window || j < m.globalTokens;
}

// The contract's polynomial exp2, with float32 rounding after every step.
double polyE(const std::vector<float>& c, double x) {
  float t = static_cast<float>(x * static_cast<double>(static_cast<float>(M_LOG2E)));
  t = std::max(t, -127.0f);
  const double n = std::floor(t);
  const double f = static_cast<float>(t - n);
  float p = c.back();
  for (int d = static_cast<int>(c.size()) - 2; d >= 0; d--) p = static_cast<float>(p * f + c[d]);
  return static_cast<float>(p * std::ldexp(1.0, static_cast<int>(n)));
}

Oracle oracle(const Problem& p, const BlockLayout& layout, bool sparse, const std::vector<float>& q, const std::vector<float>& k,
              const std::vector<float>& v) {
  const int bs = layout.blockSize;
  const int qbs = layout.queryRows();
  const int nQB = p.numQueryBlocks(qbs);
  const int nKB = p.numKeyBlocks(bs);
  const int D = p.headDim;
  Oracle o;
  o.output.assign(q.size(), 0.0);
  o.lse.assign(static_cast<std::size_t>(p.batch) * p.heads * p.seqQ, -INFINITY);
  o.thresholds.assign(o.lse.size(), -INFINITY);
  std::vector<double> s(p.seqK);
  std::vector<char> ok(p.seqK);
  std::vector<char> selected(nKB);
  for (int b = 0; b < p.batch; b++) {
    for (int h = 0; h < p.heads; h++) {
      const int hk = h / (p.heads / p.kvHeads);
      for (int i = 0; i < p.seqQ; i++) {
        const int r = (b * p.heads + h) * nQB + i / qbs;
        std::fill(selected.begin(), selected.end(), 0);
        for (int e = layout.offsets[r]; e < layout.offsets[r + 1]; e++) selected[layout.indices[e]] = (layout.flags[e] & kBlockSelected) != 0;
        std::vector<double> allowed;
        for (int j = 0; j < p.seqK; j++) {
          const bool causal = !p.mask.causal || j <= i + p.seqK - p.seqQ;
          ok[j] = causal && (!sparse || allowedByWindowSinks(p.mask, i, j) || selected[j / bs]);
          if (!ok[j]) continue;
          double dot = 0;
          for (int d = 0; d < D; d++) dot += static_cast<double>(q[p.rowBase(b, h, p.heads, p.seqQ, i) + d]) * k[p.rowBase(b, hk, p.kvHeads, p.seqK, j) + d];
          s[j] = dot * p.scale;
          allowed.push_back(s[j]);
        }
        const std::size_t row = (static_cast<std::size_t>(b) * p.heads + h) * p.seqQ + i;
        double tau = -INFINITY;
        const long long n = static_cast<long long>(allowed.size());
        if (p.topK != TopKKind::None) {
          const long long kk = p.topK == TopKKind::Count ? p.topKCount : std::max(1LL, static_cast<long long>(std::ceil(p.topKRatio * n - 1e-9 * p.topKRatio * n)));
          if (n > kk) {
            std::sort(allowed.begin(), allowed.end(), std::greater<double>());
            tau = allowed[kk - 1];
          }
        }
        o.thresholds[row] = tau;
        double m = -INFINITY;
        for (int j = 0; j < p.seqK; j++) {
          if (ok[j] && s[j] >= tau) m = std::max(m, s[j]);
        }
        double sum = 0;
        std::vector<double> acc(D, 0.0);
        long long kept = 0;
        for (int j = 0; j < p.seqK; j++) {
          if (!ok[j] || s[j] < tau) continue;
          const double e = p.polyCoefficients.empty() ? std::exp(s[j] - m) : polyE(p.polyCoefficients, s[j] - m);
          sum += e;
          kept++;
          for (int d = 0; d < D; d++) acc[d] += e * v[p.rowBase(b, hk, p.kvHeads, p.seqK, j) + d];
        }
        o.keptPairs += kept;
        if (kept == 0) o.emptyRows++;
        o.lse[row] = kept == 0 ? -INFINITY : m + std::log(sum);
        for (int d = 0; d < D; d++) o.output[p.rowBase(b, h, p.heads, p.seqQ, i) + d] = sum > 0 ? acc[d] / sum : 0.0;
      }
    }
  }
  return o;
}

struct Run {
  std::vector<float> output, lse, thresholds;
  ForwardResult result;
};

Run runForward(const Problem& p, const BlockLayout& layout, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, int threads, const Kernels& kernels) {
  Run r;
  r.output.assign(q.size(), NAN);
  r.lse.assign(static_cast<std::size_t>(p.batch) * p.heads * p.seqQ, NAN);
  r.thresholds.assign(r.lse.size(), NAN);
  r.result.output = r.output.data();
  r.result.lse = r.lse.data();
  r.result.thresholds = r.thresholds.data();
  forward(p, layout, q.data(), k.data(), v.data(), r.result, threads, kernels);
  return r;
}

// Empty when `got` matches the oracle within the contract's accuracy, else why not.
std::string compare(const Run& got, const Oracle& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.output.size(); i++) {
    if (std::isnan(got.output[i])) return "NaN in the output at " + std::to_string(i);
    num += (got.output[i] - want.output[i]) * (got.output[i] - want.output[i]);
    den += want.output[i] * want.output[i];
  }
  const double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  char buf[256];
  if (!(err <= 1e-5)) {
    std::snprintf(buf, sizeof buf, "relative error %.3e > 1e-5", err);
    return buf;
  }
  for (std::size_t i = 0; i < got.lse.size(); i++) {
    const double w = want.lse[i], g = got.lse[i];
    if (std::isinf(w) ? g != w : !(std::fabs(g - w) <= 2e-5 + 2e-6 * std::fabs(w))) {
      std::snprintf(buf, sizeof buf, "lse[%zu] = %.9g, want %.9g", i, g, w);
      return buf;
    }
    const double wt = want.thresholds[i], gt = got.thresholds[i];
    if (std::isinf(wt) ? gt != wt : !(std::fabs(gt - wt) <= 1e-5 * std::max(1.0, std::fabs(wt)))) {
      std::snprintf(buf, sizeof buf, "thresholds[%zu] = %.9g, want %.9g", i, gt, wt);
      return buf;
    }
  }
  if (got.result.keptPairs != want.keptPairs || got.result.emptyRows != want.emptyRows) {
    std::snprintf(buf, sizeof buf, "kept pairs %lld, empty rows %lld; want %lld, %lld", static_cast<long long>(got.result.keptPairs),
                  static_cast<long long>(got.result.emptyRows), static_cast<long long>(want.keptPairs), static_cast<long long>(want.emptyRows));
    return buf;
  }
  return "";
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) { return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0; }

std::vector<float> inputs(Rng& rng, std::size_t n, bool integers, double scale) {
  std::vector<float> x(n);
  for (float& e : x) e = integers ? static_cast<float>(static_cast<int>(rng.next() % 5) - 2) : static_cast<float>(rng.normal() * scale);
  return x;
}

BlockLayout layoutOf(const Case& c, const std::vector<float>& q, const std::vector<float>& k, Rng& rng) {
  const int qbs = c.queryBlockSize ? c.queryBlockSize : c.blockSize;
  switch (c.kind) {
    case LayoutKind::Dense: {
      BlockLayout dense = denseLayout(c.p, c.blockSize, qbs);
      if (!c.queryBlockSize) dense.queryBlockSize = 0;  // as a layout built by hand: 0 reads as blockSize
      return dense;
    }
    case LayoutKind::WindowSinks: return windowSinkLayout(c.p, c.blockSize, qbs);
    case LayoutKind::Select: return selectBlocks(c.p, c.blockSize, qbs, c.selection, q.data(), k.data(), 2);
    case LayoutKind::Random: break;
  }
  // Random picks among the blocks holding a causally allowed key (the rule fromSelection enforces).
  const BlockLayout dense = denseLayout(c.p, c.blockSize, qbs);
  const int nKB = c.p.numKeyBlocks(c.blockSize);
  std::vector<std::uint8_t> chosen(dense.offsets.size() * nKB, 0);
  for (std::size_t r = 0; r + 1 < dense.offsets.size(); r++) {
    for (int e = dense.offsets[r]; e < dense.offsets[r + 1]; e++) chosen[r * nKB + dense.indices[e]] = rng.next() % 3 == 0;
  }
  const int nQB = c.p.numQueryBlocks(qbs);
  return layoutFromChoice(c.p, c.blockSize, qbs, [&](int b, int h, int I) { return chosen.data() + ((static_cast<std::size_t>(b) * c.p.heads + h) * nQB + I) * nKB; });
}

Problem shape(int batch, int heads, int kvHeads, int seqQ, int seqK, int headDim, bool causal) {
  Problem p;
  p.batch = batch;
  p.heads = heads;
  p.kvHeads = kvHeads;
  p.seqQ = seqQ;
  p.seqK = seqK;
  p.headDim = headDim;
  p.scale = 1 / std::sqrt(static_cast<double>(headDim));
  p.mask = MaskSpec{seqQ, seqK, causal, -1, -1, 0};
  return p;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  auto add = [&](std::string name, Problem p, std::function<void(Case&)> tweak = nullptr) {
    Case c{std::move(name), p};
    if (tweak) tweak(c);
    out.push_back(std::move(c));
  };
  for (int D : {1, 59, 64, 111, 128, 256}) add("dense causal D" + std::to_string(D), shape(1, 2, 2, 97, 97, D, true));
  add("dense non-causal D64 N1", shape(1, 2, 2, 1, 1, 64, false));
  add("dense causal D64 N1025", shape(1, 1, 1, 1025, 1025, 64, true));
  add("dense non-causal D128 N1025", shape(1, 1, 1, 1025, 1025, 128, false), [](Case& c) { c.qScale = 2; });
  add("causal Nq 97 < Nk 300", shape(2, 2, 2, 97, 300, 64, true));
  add("causal Nq 300 > Nk 97 (empty rows)", shape(1, 2, 2, 300, 97, 64, true));
  add("non-causal Nq 1 Nk 1025 D111", shape(1, 4, 4, 1, 1025, 111, false));
  add("GQA 4 causal", shape(1, 8, 2, 130, 130, 64, true));
  add("GQA 8 bnhd", shape(2, 8, 1, 70, 90, 59, false), [](Case& c) { c.p.bnhd = true; });
  add("bnhd causal D128", shape(1, 3, 3, 200, 200, 128, true), [](Case& c) { c.p.bnhd = true; });
  add("window 33 causal", shape(1, 2, 2, 300, 300, 64, true), [](Case& c) {
    c.p.mask.windowLeft = 32, c.p.mask.windowRight = 0, c.kind = LayoutKind::WindowSinks;
  });
  add("window [5, 7] non-causal bs16", shape(1, 2, 2, 150, 170, 64, false), [](Case& c) {
    c.p.mask.windowLeft = 5, c.p.mask.windowRight = 7, c.kind = LayoutKind::WindowSinks, c.blockSize = 16;
  });
  add("window 64 + 4 sinks causal N1025", shape(1, 2, 2, 1025, 1025, 64, true), [](Case& c) {
    c.p.mask.windowLeft = 63, c.p.mask.windowRight = 0, c.p.mask.globalTokens = 4, c.kind = LayoutKind::WindowSinks;
  });
  add("sinks only, Nq > Nk (empty rows)", shape(1, 2, 2, 200, 150, 64, true), [](Case& c) {
    c.p.mask.globalTokens = 3, c.kind = LayoutKind::WindowSinks;
  });
  add("random layout bs48 bnhd GQA 4", shape(2, 4, 1, 250, 260, 111, true), [](Case& c) {
    c.kind = LayoutKind::Random, c.blockSize = 48, c.p.bnhd = true, c.p.mask.windowLeft = 20, c.p.mask.windowRight = 0;
  });
  add("selection ratio 0.3 mean + window", shape(1, 4, 4, 600, 600, 64, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.selection.value = 0.3, c.p.mask.windowLeft = 63, c.p.mask.windowRight = 0, c.p.mask.globalTokens = 4;
  });
  add("selection topBlocks 2 bound bs128 D256", shape(1, 2, 2, 700, 700, 256, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.blockSize = 128, c.selection.mode = SelectionMode::TopBlocks, c.selection.value = 2;
    c.selection.estimate = Estimate::Bound;
  });
  add("selection progressive 0.9 shared GQA 4 min 2 max 5", shape(1, 8, 2, 500, 520, 64, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.selection.mode = SelectionMode::Progressive, c.selection.value = 0.9, c.selection.shareAcrossGroup = true;
    c.selection.minBlocks = 2, c.selection.maxBlocks = 5, c.p.mask.globalTokens = 1;
  });
  add("selection ratio 0.4 moment GQA 4", shape(1, 8, 2, 400, 400, 64, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.selection.value = 0.4, c.selection.estimate = Estimate::Moment, c.p.mask.globalTokens = 2;
  });
  // Query blocks of other sizes than the key blocks: one layout row per queryBlockSize rows.
  for (int qbs : {1, 7, 16, 100}) {
    add("query blocks of " + std::to_string(qbs) + " rows, selection topBlocks 3 + window", shape(1, 2, 2, 230, 260, 59, true), [qbs](Case& c) {
      c.kind = LayoutKind::Select, c.queryBlockSize = qbs, c.selection.mode = SelectionMode::TopBlocks, c.selection.value = 3;
      c.p.mask.windowLeft = 40, c.p.mask.windowRight = 0, c.p.mask.globalTokens = 1;
    });
  }
  add("query blocks of 5 rows, random layout bs32 bnhd topK 9", shape(1, 4, 2, 90, 120, 64, false), [](Case& c) {
    c.kind = LayoutKind::Random, c.blockSize = 32, c.queryBlockSize = 5, c.p.bnhd = true, c.p.topK = TopKKind::Count, c.p.topKCount = 9;
  });
  add("decode Nq 4 query blocks of 1 row, selection", shape(1, 4, 4, 4, 2000, 64, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.queryBlockSize = 1, c.selection.value = 0.3;
  });
  add("topK 7 causal", shape(1, 2, 2, 200, 200, 64, true), [](Case& c) { c.p.topK = TopKKind::Count, c.p.topKCount = 7; });
  add("topKRatio 0.25 window 100 bnhd", shape(1, 2, 2, 300, 330, 59, true), [](Case& c) {
    c.p.topK = TopKKind::Ratio, c.p.topKRatio = 0.25, c.p.mask.windowLeft = 99, c.p.mask.windowRight = 0, c.kind = LayoutKind::WindowSinks, c.p.bnhd = true;
  });
  add("topK 5 tied integer scores", shape(1, 2, 2, 130, 130, 16, true), [](Case& c) {
    c.p.topK = TopKKind::Count, c.p.topKCount = 5, c.integers = true, c.p.scale = 0.5;
  });
  add("topKRatio 0.1 tied integer scores, random layout", shape(1, 2, 1, 140, 140, 8, false), [](Case& c) {
    c.p.topK = TopKKind::Ratio, c.p.topKRatio = 0.1, c.integers = true, c.p.scale = 0.25, c.kind = LayoutKind::Random, c.blockSize = 32;
  });
  // Decode-like shapes: few query rows, whose key blocks are split over threads.
  add("decode Nq 1 Nk 5000 GQA 4", shape(1, 8, 2, 1, 5000, 64, true));
  add("decode Nq 3 Nk 3000 bnhd window + sinks + topK 50", shape(2, 2, 2, 3, 3000, 128, true), [](Case& c) {
    c.p.bnhd = true, c.p.mask.windowLeft = 1500, c.p.mask.windowRight = 0, c.p.mask.globalTokens = 4, c.kind = LayoutKind::WindowSinks;
    c.p.topK = TopKKind::Count, c.p.topKCount = 50;
  });
  add("decode Nq 16 Nk 2100 selection + poly degree 4", shape(1, 4, 4, 16, 2100, 64, true), [](Case& c) {
    c.kind = LayoutKind::Select, c.selection.value = 0.5, c.p.mask.globalTokens = 2;
    c.p.polyCoefficients = {1, 0.693042695522308349609375f, 0.2412912547588348388671875f, 5.2225358784198760986328125e-2f, 1.3434938155114650726318359375e-2f};
  });
  const std::vector<std::vector<float>> polys = {
      {1, 0.6657850742340087890625f, 0.330107033252716064453125f},
      {1, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f},
      {1, 0.693151414394378662109375f, 0.24016360938549041748046875f, 5.5802188813686370849609375e-2f, 9.01452265679836273193359375e-3f,
       1.86810153536498546600341796875e-3f},
  };
  for (const auto& c : polys) {
    add("poly degree " + std::to_string(c.size() - 1) + " causal", shape(1, 2, 2, 257, 257, 64, true), [&](Case& k) {
      k.p.polyCoefficients = c, k.qScale = 3;
    });
  }
  add("poly degree 3 + topK 9 + sinks, far scores (2^-127)", shape(1, 1, 1, 150, 150, 32, true), [&](Case& c) {
    c.p.polyCoefficients = polys[1], c.p.topK = TopKKind::Count, c.p.topKCount = 9, c.qScale = 12, c.p.mask.globalTokens = 2;
    c.p.mask.windowLeft = 40, c.p.mask.windowRight = 0, c.kind = LayoutKind::WindowSinks;
  });
  return out;
}

// The kernels' exponentials alone, through softmax on rows whose maximum is 0: exp within
// 2 ulp of the float64 value, the polynomial exp2 bit-identical to the contract's rounding.
std::string checkExponentials(const Kernels& kernels, bool poly) {
  const std::vector<float> c = {1, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f};
  std::vector<float> row(1 << 16);
  Rng rng{poly ? 7u : 5u};
  for (std::size_t i = 0; i < row.size(); i++) row[i] = i == 0 ? 0.0f : static_cast<float>(-100 * rng.uniform() * rng.uniform());
  const std::vector<float> x = row;
  kernels.softmax(row.data(), static_cast<int>(row.size()), -INFINITY, poly ? c.data() : nullptr, 3);
  for (std::size_t i = 0; i < row.size(); i++) {
    const double want = poly ? polyE(c, x[i]) : std::exp(static_cast<double>(x[i]));
    if (poly ? row[i] != static_cast<float>(want) : x[i] > -87.0f && std::fabs(row[i] - want) > 2 * (std::nextafter(static_cast<float>(want), INFINITY) - static_cast<float>(want))) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "E(%.9g) = %.9g, want %.9g", x[i], row[i], want);
      return buf;
    }
  }
  return "";
}

// An item's exception reaches the caller, and the pool runs every item of the next job.
std::string checkPoolFailure() {
  ThreadPool& pool = ThreadPool::shared();
  try {
    pool.run(3, 1000, [](std::int64_t item, int) {
      if (item == 500) throw std::runtime_error("item 500");
    });
    return "the exception was lost";
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "item 500") return std::string("wrong exception: ") + e.what();
  }
  std::vector<int> seen(1000, 0);
  pool.run(3, 1000, [&](std::int64_t item, int) { seen[item]++; });
  return std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }) ? "" : "the next job did not run every item once";
}

}  // namespace

int main() {
  const std::vector<const Kernels*> sets = supportedKernels();
  int failed = 0, passed = 0;
  auto report = [&](const std::string& name, const std::string& why) {
    if (why.empty()) {
      passed++;
      std::printf("PASS %s\n", name.c_str());
    } else {
      failed++;
      std::printf("FAIL %s: %s\n", name.c_str(), why.c_str());
    }
  };
  report("thread pool: an item's exception reaches the caller", checkPoolFailure());
  for (const Kernels* kernels : sets) {
    report(std::string("exp within 2 ulp [") + kernels->name + "]", checkExponentials(*kernels, false));
    report(std::string("poly exp2 bit-exact [") + kernels->name + "]", checkExponentials(*kernels, true));
  }
  for (const Case& c : cases()) {
    Rng rng{std::hash<std::string>{}(c.name)};
    const Problem& p = c.p;
    const std::size_t qn = static_cast<std::size_t>(p.batch) * p.heads * p.seqQ * p.headDim;
    const std::size_t kn = static_cast<std::size_t>(p.batch) * p.kvHeads * p.seqK * p.headDim;
    const std::vector<float> q = inputs(rng, qn, c.integers, c.qScale), k = inputs(rng, kn, c.integers, 1), v = inputs(rng, kn, c.integers, 1);
    const BlockLayout layout = layoutOf(c, q, k, rng);
    const Oracle want = oracle(p, layout, c.kind != LayoutKind::Dense, q, k, v);
    for (const Kernels* kernels : sets) {
      const std::string name = c.name + " [" + kernels->name + "]";
      const Run one = runForward(p, layout, q, k, v, 1, *kernels);
      std::string why = compare(one, want);
      if (why.empty()) {
        const Run three = runForward(p, layout, q, k, v, 3, *kernels);
        if (!sameBits(one.output, three.output) || !sameBits(one.lse, three.lse) || !sameBits(one.thresholds, three.thresholds)) why = "3 threads differ from 1";
      }
      report(name, why);
    }
  }
  std::printf("%d failed, %d passed\n", failed, passed);
  return failed ? 1 : 0;
}
