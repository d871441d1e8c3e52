// Checks the CPU backward (cpu/backward.h) against float64 gradients computed here row by row
// from the definition (docs/backward.md): kept sets from the contract's allowed set and the
// forward's thresholds, each row's maximum held constant, the polynomial's own derivative. Odd
// sizes, every option, query blocks of 1, 16 and blockSize rows, for each kernel set this CPU
// runs; gradients must be bit-identical with 1 and 3 threads. Prints "PASS <case>" /
// "FAIL <case>: <why>" and "<n> failed".
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backward.h"
#include "forward.h"
#include "kernels.h"
#include "layout.h"
#include "mask.h"

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

enum class LayoutKind { Dense, WindowSinks, Random };

struct Case {
  std::string name;
  Problem p;
  int blockSize = 64;
  int queryBlockSize = 0;  // 0: blockSize
  LayoutKind kind = LayoutKind::Dense;
  double qScale = 1.0;
};

// The contract's polynomial exp2 (float32 rounding after every step) and its derivative in float64.
double polyE(const std::vector<float>& c, double x) {
  float t = std::max(static_cast<float>(x * static_cast<double>(static_cast<float>(M_LOG2E))), -127.0f);
  const double n = std::floor(t);
  const double f = static_cast<float>(t - n);
  float p = c.back();
  for (int d = static_cast<int>(c.size()) - 2; d >= 0; d--) p = static_cast<float>(p * f + c[d]);
  return static_cast<float>(p * std::ldexp(1.0, static_cast<int>(n)));
}

double polyDE(const std::vector<float>& c, double x) {
  const double log2e = static_cast<float>(M_LOG2E);
  const double t = x * log2e;
  if (t < -127) return 0;
  const double n = std::floor(t);
  const double f = t - n;
  const int degree = static_cast<int>(c.size()) - 1;
  double dp = degree * static_cast<double>(c[degree]);
  for (int d = degree - 1; d >= 1; d--) dp = dp * f + d * static_cast<double>(c[d]);
  return log2e * dp * std::ldexp(1.0, static_cast<int>(n));
}

struct Grads {
  std::vector<double> dq, dk, dv;
};

Grads oracle(const Problem& p, const BlockLayout& layout, int qbs, bool sparse, const std::vector<float>& thresholds, const std::vector<float>& q,
             const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& dO) {
  const int bs = layout.blockSize;
  const int nQB = (p.seqQ + qbs - 1) / qbs;
  const int D = p.headDim;
  const bool poly = !p.polyCoefficients.empty();
  Grads g{std::vector<double>(q.size()), std::vector<double>(k.size()), std::vector<double>(v.size())};
  std::vector<double> s(p.seqK), o(D);
  std::vector<char> ok(p.seqK), selected(p.numKeyBlocks(bs));
  for (int b = 0; b < p.batch; b++) {
    for (int h = 0; h < p.heads; h++) {
      const int hk = h / (p.heads / p.kvHeads);
      for (int i = 0; i < p.seqQ; i++) {
        const int r = (b * p.heads + h) * nQB + i / qbs;
        std::fill(selected.begin(), selected.end(), 0);
        for (int e = layout.offsets[r]; e < layout.offsets[r + 1]; e++) selected[layout.indices[e]] = (layout.flags[e] & kBlockSelected) != 0;
        const double tau = thresholds[(static_cast<std::size_t>(b) * p.heads + h) * p.seqQ + i];
        const std::int64_t qi = p.rowBase(b, h, p.heads, p.seqQ, i);
        double m = -INFINITY;
        for (int j = 0; j < p.seqK; j++) {
          const int pos = i + p.seqK - p.seqQ;
          const bool window = p.mask.windowLeft >= 0 && j >= 1LL * pos - p.mask.windowLeft && j <= 1LL * pos + p.mask.windowRight;
          ok[j] = (!p.mask.causal || j <= pos) && (!sparse || window || j < p.mask.globalTokens || selected[j / bs]);
          if (!ok[j]) continue;
          double dot = 0;
          for (int d = 0; d < D; d++) dot += static_cast<double>(q[qi + d]) * k[p.rowBase(b, hk, p.kvHeads, p.seqK, j) + d];
          s[j] = dot * p.scale;
          // The forward's float32 threshold against float64 scores: the k-th score itself stays kept.
          if (s[j] < tau - 1e-6 * std::max(1.0, std::fabs(tau))) ok[j] = 0;
          if (ok[j]) m = std::max(m, s[j]);
        }
        if (m == -INFINITY) continue;
        double z = 0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int j = 0; j < p.seqK; j++) {
          if (!ok[j]) continue;
          const double e = poly ? polyE(p.polyCoefficients, s[j] - m) : std::exp(s[j] - m);
          z += e;
          for (int d = 0; d < D; d++) o[d] += e * v[p.rowBase(b, hk, p.kvHeads, p.seqK, j) + d];
        }
        double di = 0;
        for (int d = 0; d < D; d++) di += dO[qi + d] * o[d] / z;
        for (int j = 0; j < p.seqK; j++) {
          if (!ok[j]) continue;
          const std::int64_t kj = p.rowBase(b, hk, p.kvHeads, p.seqK, j);
          const double P = (poly ? polyE(p.polyCoefficients, s[j] - m) : std::exp(s[j] - m)) / z;
          const double dE = poly ? polyDE(p.polyCoefficients, s[j] - m) : std::exp(s[j] - m);
          double dP = 0;
          for (int d = 0; d < D; d++) dP += dO[qi + d] * static_cast<double>(v[kj + d]);
          const double dS = dE / z * (dP - di);
          for (int d = 0; d < D; d++) {
            g.dq[qi + d] += p.scale * dS * k[kj + d];
            g.dk[kj + d] += p.scale * dS * q[qi + d];
            g.dv[kj + d] += P * dO[qi + d];
          }
        }
      }
    }
  }
  return g;
}

double relFrob(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); i++) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<float> inputs(Rng& rng, std::size_t n, double scale) {
  std::vector<float> x(n);
  for (float& e : x) e = static_cast<float>(rng.normal() * scale);
  return x;
}

// Query blocks of qbs rows: every key block holding a causally allowed key of the query block,
// kept with probability 1/2 (the window and sinks are then left out: the layout is the whole set).
BlockLayout randomLayout(const Problem& p, int bs, int qbs, Rng& rng) {
  BlockLayout l;
  l.blockSize = bs;
  l.offsets.push_back(0);
  const int nQB = (p.seqQ + qbs - 1) / qbs;
  for (int bh = 0; bh < p.batch * p.heads; bh++) {
    for (int I = 0; I < nQB; I++) {
      const int i0 = I * qbs;
      const int i1 = std::min(p.seqQ, i0 + qbs) - 1;
      for (int J = 0; J < p.numKeyBlocks(bs); J++) {
        const int j0 = J * bs;
        const int j1 = std::min(p.seqK, j0 + bs) - 1;
        const Coverage c = tileCoverage(p.mask, i0, i1, j0, j1, true);
        if (c == Coverage::None || rng.next() % 2) continue;
        l.indices.push_back(J);
        l.flags.push_back(kBlockSelected | (c == Coverage::Full ? kBlockFull : 0));
      }
      l.offsets.push_back(static_cast<std::int32_t>(l.indices.size()));
    }
  }
  return l;
}

Problem shape(int batch, int heads, int kvHeads, int seqQ, int seqK, int headDim, bool causal) {
  Problem p;
  p.batch = batch, p.heads = heads, p.kvHeads = kvHeads, p.seqQ = seqQ, p.seqK = seqK, p.headDim = headDim;
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
  add("dense non-causal N1", shape(1, 2, 2, 1, 1, 64, false));
  add("dense causal N1025", shape(1, 1, 1, 1025, 1025, 64, true));
  add("causal Nq 97 < Nk 300", shape(2, 2, 2, 97, 300, 64, true));
  add("causal Nq 300 > Nk 97 (empty rows)", shape(1, 2, 2, 300, 97, 64, true));
  add("GQA 4 causal", shape(1, 8, 2, 130, 130, 64, true));
  add("GQA 8 bnhd non-causal", shape(2, 8, 1, 70, 90, 59, false), [](Case& c) { c.p.bnhd = true; });
  add("window 33 + 3 sinks causal", shape(1, 2, 2, 300, 300, 64, true), [](Case& c) {
    c.p.mask.windowLeft = 32, c.p.mask.windowRight = 0, c.p.mask.globalTokens = 3, c.kind = LayoutKind::WindowSinks;
  });
  add("window [5, 7] non-causal bs16", shape(1, 2, 2, 150, 170, 64, false), [](Case& c) {
    c.p.mask.windowLeft = 5, c.p.mask.windowRight = 7, c.kind = LayoutKind::WindowSinks, c.blockSize = 16;
  });
  add("sinks only, Nq > Nk (empty rows)", shape(1, 2, 2, 200, 150, 64, true), [](Case& c) { c.p.mask.globalTokens = 3, c.kind = LayoutKind::WindowSinks; });
  add("random layout bs48 bnhd GQA 4", shape(2, 4, 1, 250, 260, 111, true), [](Case& c) { c.kind = LayoutKind::Random, c.blockSize = 48, c.p.bnhd = true; });
  add("random layout query blocks of 1, bs32", shape(1, 2, 1, 90, 100, 24, true), [](Case& c) { c.kind = LayoutKind::Random, c.blockSize = 32, c.queryBlockSize = 1; });
  add("random layout query blocks of 16, bs64 GQA 2", shape(1, 4, 2, 200, 200, 64, true), [](Case& c) { c.kind = LayoutKind::Random, c.queryBlockSize = 16; });
  add("topK 7 causal", shape(1, 2, 2, 200, 200, 64, true), [](Case& c) { c.p.topK = TopKKind::Count, c.p.topKCount = 7; });
  add("topKRatio 0.25 window 100 bnhd", shape(1, 2, 2, 300, 330, 59, true), [](Case& c) {
    c.p.topK = TopKKind::Ratio, c.p.topKRatio = 0.25, c.p.mask.windowLeft = 99, c.p.mask.windowRight = 0, c.kind = LayoutKind::WindowSinks, c.p.bnhd = true;
  });
  const std::vector<std::vector<float>> polys = {
      {1, 0.6657850742340087890625f, 0.330107033252716064453125f},
      {1, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f},
      {1, 0.693151414394378662109375f, 0.24016360938549041748046875f, 5.5802188813686370849609375e-2f, 9.01452265679836273193359375e-3f,
       1.86810153536498546600341796875e-3f},
  };
  for (const auto& c : polys) {
    add("poly degree " + std::to_string(c.size() - 1) + " causal", shape(1, 2, 2, 257, 257, 64, true), [&](Case& k) { k.p.polyCoefficients = c, k.qScale = 3; });
  }
  add("poly degree 3 + topK 9 + sinks, far scores (2^-127)", shape(1, 1, 1, 150, 150, 32, true), [&](Case& c) {
    c.p.polyCoefficients = polys[1], c.p.topK = TopKKind::Count, c.p.topKCount = 9, c.qScale = 12, c.p.mask.globalTokens = 2;
    c.p.mask.windowLeft = 40, c.p.mask.windowRight = 0, c.kind = LayoutKind::WindowSinks;
  });
  return out;
}

struct Run {
  std::vector<float> dq, dk, dv;
};

Run runBackward(const Case& c, const BlockLayout& layout, int qbs, const std::vector<float>& thresholds, const std::vector<float>& q,
                const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& dO, int threads, const Kernels& kernels) {
  Run r{std::vector<float>(q.size(), NAN), std::vector<float>(k.size(), NAN), std::vector<float>(v.size(), NAN)};
  backward(c.p, layout, qbs, BackwardInputs{q.data(), k.data(), v.data(), dO.data(), thresholds.data()}, Gradients{r.dq.data(), r.dk.data(), r.dv.data()}, threads,
           kernels, backwardKernelsFor(kernels));
  return r;
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) { return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0; }

}  // namespace

int main() {
  std::vector<const Kernels*> sets = {&portableKernels()};
  if (&bestKernels() != &portableKernels()) sets.push_back(&bestKernels());
  int failed = 0, passed = 0;
  for (const Case& c : cases()) {
    Rng rng{std::hash<std::string>{}(c.name)};
    const Problem& p = c.p;
    const int qbs = c.queryBlockSize ? c.queryBlockSize : c.blockSize;
    const std::size_t qn = static_cast<std::size_t>(p.batch) * p.heads * p.seqQ * p.headDim;
    const std::size_t kn = static_cast<std::size_t>(p.batch) * p.kvHeads * p.seqK * p.headDim;
    const std::vector<float> q = inputs(rng, qn, c.qScale), k = inputs(rng, kn, 1), v = inputs(rng, kn, 1), dO = inputs(rng, qn, 1);
    const BlockLayout layout = c.kind == LayoutKind::Dense ? denseLayout(p, c.blockSize)
                               : c.kind == LayoutKind::WindowSinks ? windowSinkLayout(p, c.blockSize)
                                                                  : randomLayout(p, c.blockSize, qbs, rng);
    for (const Kernels* kernels : sets) {
      // The thresholds of this kernel set's forward, whose scores the backward recomputes bit for bit.
      std::vector<float> thresholds(static_cast<std::size_t>(p.batch) * p.heads * p.seqQ, -INFINITY);
      if (p.topK != TopKKind::None) {
        std::vector<float> output(q.size());
        ForwardResult fr;
        fr.output = output.data();
        fr.thresholds = thresholds.data();
        forward(p, layout, q.data(), k.data(), v.data(), fr, 1, *kernels);
      }
      const Grads want = oracle(p, layout, qbs, c.kind != LayoutKind::Dense, thresholds, q, k, v, dO);
      const Run one = runBackward(c, layout, qbs, thresholds, q, k, v, dO, 1, *kernels);
      char buf[256] = "";
      const double errs[3] = {relFrob(one.dq, want.dq), relFrob(one.dk, want.dk), relFrob(one.dv, want.dv)};
      const char* names[3] = {"dq", "dk", "dv"};
      for (int x = 0; x < 3 && !buf[0]; x++) {
        if (!(errs[x] <= 1e-5)) std::snprintf(buf, sizeof buf, "%s: relative Frobenius error %.3e > 1e-5", names[x], errs[x]);
      }
      if (!buf[0]) {
        const Run three = runBackward(c, layout, qbs, thresholds, q, k, v, dO, 3, *kernels);
        if (!sameBits(one.dq, three.dq) || !sameBits(one.dk, three.dk) || !sameBits(one.dv, three.dv)) std::snprintf(buf, sizeof buf, "3 threads differ from 1");
      }
      const std::string name = c.name + " [" + kernels->name + "]";
      if (buf[0]) failed++, std::printf("FAIL %s: %s\n", name.c_str(), buf);
      else passed++, std::printf("PASS %s (dq %.1e, dk %.1e, dv %.1e)\n", name.c_str(), errs[0], errs[1], errs[2]);
    }
  }
  std::printf("%d failed, %d passed\n", failed, passed);
  return failed ? 1 : 0;
}
