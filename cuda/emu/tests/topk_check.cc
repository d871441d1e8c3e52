// The top-k threshold kernel (cuda/attention/topk_kernel.cuh) in the CPU model, against a host
// std::nth_element over float64 scores from the same rounded 16-bit inputs and the same allowed
// sets. Layouts are built here element by element (an independent re-derivation of the rule in
// lib/mask.ts), at block size 64 and larger multiples of 64.
//
// Two kinds of input:
//   integer  q, k in -R..R (exact in fp16 and bf16), scale a power of two: every product and
//            float32 sum is exact, so tau must equal the host's k-th largest bit for bit, and
//            scores tie often (ties are counted: the k-th element of the multiset);
//   float    q, k ~ N(0, 1): tau within rounding of the host's k-th largest, and the host count
//            of scores above tau (beyond rounding) below k, at or above tau (within rounding) >= k.
// Covers count and ratio modes (ceil tolerance), k = 1, k >= |A_i| (-inf), empty rows, causal
// and not, Nq != Nk, window + sinks + selected blocks, dense without a layout, GQA, bhnd and bnhd,
// head dims 1..256, block size 128 and 192 layouts, fp16 and bf16, negative scale (-0 scores),
// a bin count above 65535.
// Prints "PASS <case>" or "FAIL <case>: <why>" per case and "<n> failed"; exits 1 if any failed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../attention/topk.h"
#include "../../cuda_compat.h"
#include "../../primitives.cuh"
#include "check_util.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// lib/validate.ts ceilTolerant.
double ceil_tolerant(double x) { return std::ceil(x - 1e-9 * std::fabs(x)); }

struct Case : MaskedCase {
  int topK = 0;            // > 0: count mode
  double ratio = 0.0;      // else ratio mode
  int intRange = 3;        // integer inputs in -intRange..intRange; < 0: float N(0, 1) inputs
  int zeroKeysRange = -1;  // >= 0: k drawn from -zeroKeysRange..zeroKeysRange instead (0: every score ties at 0)
  double scale = 0.0;      // 0: 0.125 (integer) or 1/sqrt(D) (float)
};

struct Result {
  int infRows = 0, rows = 0, minA = 0, maxA = 0;
  std::string why;
};

Result run_case(const Case& c, MmaType type, std::uint32_t seed) {
  const int B = c.batch, H = c.heads, Hkv = c.kvHeads, Nq = c.seqQ, Nk = c.seqK, D = c.headDim;
  const bool integer = c.intRange >= 0;
  const double scale = c.scale != 0.0 ? c.scale : integer ? 0.125 : 1.0 / std::sqrt(static_cast<double>(D));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto draw = [&](int range) -> float {
    if (range < 0) return normal(rng);
    return static_cast<float>(std::uniform_int_distribution<int>(-range, range)(rng));
  };
  const std::size_t nq = c.elements(false), nk = c.elements(true);
  std::vector<std::uint16_t> qb(nq), kb(nk);
  std::vector<double> qf(nq), kf(nk);
  for (std::size_t i = 0; i < nq; i++) qf[i] = twin::to_float(qb[i] = encode(draw(c.intRange), type), type);
  for (std::size_t i = 0; i < nk; i++) kf[i] = twin::to_float(kb[i] = encode(draw(c.zeroKeysRange >= 0 ? c.zeroKeysRange : c.intRange), type), type);

  // The kernel.
  const std::size_t nRows = static_cast<std::size_t>(B) * H * Nq;
  DeviceArray<std::uint16_t> dq(nq), dk(nk);
  DeviceArray<float> dtau(nRows);
  const DeviceLayout dlayout(layout_of(c));
  dq.put(qb);
  dk.put(kb);
  dtau.poison();
  const ForwardParams p = forward_params(c, dlayout, dq.ptr, dk.ptr, static_cast<float>(scale));

  Result res;
  res.why = launch_failure(attention_topk_thresholds(p, type, c.topK, c.ratio, dtau.ptr, cudaStreamPerThread));
  if (!res.why.empty()) return res;
  const std::vector<float> tau = dtau.get();

  // The host oracle, row by row.
  res.minA = std::numeric_limits<int>::max();
  std::vector<double> sc, mag;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int kvh = h / (H / Hkv);
      for (int i = 0; i < Nq; i++) {
        const std::size_t row = (static_cast<std::size_t>(b) * H + h) * Nq + i;
        sc.clear();
        double magnitude = 0;  // max over allowed j of scale * sum_d |q_d k_d|: the rounding scale of a float32 dot
        for (int j = 0; j < Nk; j++) {
          if (!c.allowed(b, h, i, j)) continue;
          double dot = 0, adot = 0;
          for (int d = 0; d < D; d++) {
            const double x = qf[c.index(false, b, h, i, d)] * kf[c.index(true, b, kvh, j, d)];
            dot += x;
            adot += std::fabs(x);
          }
          sc.push_back(scale * dot);
          magnitude = std::max(magnitude, std::fabs(scale) * adot);
        }
        const long long n = static_cast<long long>(sc.size());
        res.minA = std::min<int>(res.minA, static_cast<int>(n));
        res.maxA = std::max<int>(res.maxA, static_cast<int>(n));
        res.rows++;
        const long long k = c.topK > 0 ? c.topK : std::max(1LL, static_cast<long long>(ceil_tolerant(c.ratio * static_cast<double>(n))));
        const float got = tau[row];
        auto where = [&] {
          return "row " + std::to_string(i) + " (b " + std::to_string(b) + ", h " + std::to_string(h) + ", |A| " + std::to_string(n) + ", k " +
                 std::to_string(k) + "): tau ";
        };
        if (n <= k) {
          res.infRows++;
          if (!(got == kNegInf)) {
            res.why = where() + std::to_string(got) + ", want -inf";
            return res;
          }
          continue;
        }
        std::nth_element(sc.begin(), sc.begin() + (k - 1), sc.end(), std::greater<double>());
        const double want = sc[k - 1];
        if (!std::isfinite(got)) {
          res.why = where() + std::to_string(got) + ", want " + std::to_string(want);
          return res;
        }
        if (integer) {
          if (static_cast<double>(static_cast<float>(want)) != want || static_cast<double>(got) != want) {
            char buf[128];
            std::snprintf(buf, sizeof buf, "%.9g, want exactly %.9g", got, want);
            res.why = where() + buf;
            return res;
          }
        } else {
          const double tol = 1e-5 * std::fabs(want) + 4.0 * D * 0x1p-24 * magnitude;
          long long above = 0, atLeast = 0;  // host scores > tau + tol, >= tau - tol
          for (const double s : sc) {
            above += s > got + tol;
            atLeast += s >= got - tol;
          }
          if (!(std::fabs(got - want) <= tol) || !(above < k) || !(atLeast >= k)) {
            char buf[256];
            std::snprintf(buf, sizeof buf, "%.9g, want %.9g within %.2g (%lld host scores above, %lld at or above)", got, want, tol, above, atLeast);
            res.why = where() + buf;
            return res;
          }
        }
      }
    }
  return res;
}

constexpr long long kQuickPairs = 13000;  // --quick: see skipped_when_quick

void check(const Case& c, MmaType type, std::uint32_t seed = 1) {
  if (skipped_when_quick(c, type, kQuickPairs)) return;
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run_case(c, type, seed);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char mode[64];
  if (c.topK > 0) {
    std::snprintf(mode, sizeof mode, "top-%d", c.topK);
  } else {
    std::snprintf(mode, sizeof mode, "ratio %g", c.ratio);
  }
  char name[512];
  std::snprintf(name, sizeof name, "%s %s %s %s B%d H%d/%d Nq%d Nk%d D%d %s block %d (|A| %d..%d, %d of %d rows -inf, %.0f ms)", c.name.c_str(),
                type == MmaType::BF16 ? "bf16" : "f16", c.intRange >= 0 ? "integer" : "float", mode, c.batch, c.heads, c.kvHeads, c.seqQ, c.seqK,
                c.headDim, c.bnhd ? "bnhd" : "bhnd", c.blockSize, r.rows ? r.minA : 0, r.maxA, r.infRows, r.rows, ms);
  report(name, r.why.empty(), r.why);
}

Case make(const std::string& name, int Nq, int Nk, int D, bool causal, int topK, double ratio = 0.0) {
  Case c;
  c.name = name;
  c.seqQ = Nq;
  c.seqK = Nk;
  c.headDim = D;
  c.causal = causal;
  c.topK = topK;
  c.ratio = ratio;
  return c;
}

void check_rejects() {
  ForwardParams p;
  p.shape = Shape{1, 3, 2, 64, 64, 64};
  std::uint16_t dummy[8] = {};
  p.q = p.k = dummy;
  float out[64];
  auto rejects = [&](int topK, double ratio, float* th) { return attention_topk_thresholds(p, MmaType::BF16, topK, ratio, th, cudaStreamPerThread) == cudaErrorInvalidValue; };
  bool ok = rejects(4, 0, out);
  p.shape.kvHeads = 1;
  p.shape.headDim = 257;
  ok = ok && rejects(4, 0, out);
  p.shape.headDim = 0;
  ok = ok && rejects(4, 0, out);
  p.shape.headDim = 64;
  p.blockSize = 96;
  ok = ok && rejects(4, 0, out);
  p.blockSize = 0;
  ok = ok && rejects(4, 0, out);
  p.blockSize = 64;
  ok = ok && rejects(0, 0.0, out) && rejects(0, 1.5, out) && rejects(-1, std::nan(""), out) && rejects(4, 0, nullptr);
  const std::int32_t offs[2] = {0, 0};
  p.layoutOffsets = offs;  // without indices and flags
  ok = ok && rejects(4, 0, out);
  p.layoutOffsets = nullptr;
  p.shape.seqQ = 0;
  ok = ok && attention_topk_thresholds(p, MmaType::F16, 4, 0, nullptr, cudaStreamPerThread) == cudaSuccess;
  report("launcher rejects heads % kvHeads != 0, headDim outside 1..256, blockSize not a multiple of 64, no topK and ratio outside (0, 1], missing pointers; seqQ 0 launches nothing", ok);
  // The launchers' dynamic shared memory: the traits' figures, which the compile gate's occupancy uses too.
  report("dynamic shared memory per instantiation: d 64 84480 B, d 128 100864 B, d 256 82944 B (two CTAs in sm_80's 164 KB), all <= 101376",
         attention_topk_smem_bytes(1) == 84480 && attention_topk_smem_bytes(64) == 84480 && attention_topk_smem_bytes(65) == 100864 &&
             attention_topk_smem_bytes(128) == 100864 && attention_topk_smem_bytes(129) == 82944 && attention_topk_smem_bytes(256) == 82944 &&
             attention_topk_smem_bytes(257) == 0 && attention_topk_smem_bytes(0) == 0);
}

}  // namespace

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (MmaType type : {MmaType::F16, MmaType::BF16}) {
    const bool f16 = type == MmaType::F16;
    // Dense: the kernel's own block enumeration (no layout) and a layout.
    {
      Case c = make("dense causal, no layout, GQA 4/1", 200, 200, 64, true, 16);
      c.nullLayout = true;
      c.heads = 4;
      check(c, type);
    }
    check(make("dense causal, layout", 200, 200, 64, true, 0, 0.25), type);
    {
      Case c = make("dense non-causal, layout, Nq < Nk, bnhd, GQA 4/2", 97, 300, 64, false, 0, 0.1);
      c.bnhd = true;
      c.heads = 4;
      c.kvHeads = 2;
      check(c, type);
    }
    {
      Case c = make("dense non-causal, no layout, Nq > Nk, k = 1", 200, 97, 64, false, 1);
      c.nullLayout = true;
      check(c, type);
    }
    {
      Case c = make("dense causal Nq > Nk (empty rows), no layout", 200, 97, 64, true, 8);
      c.nullLayout = true;
      c.bnhd = true;
      check(c, type);
    }
    check(make("dense causal Nq > Nk (empty rows), layout, ratio", 200, 97, 64, true, 0, 0.3), type);
    check(make("k >= |A_i| on every row (all -inf, early exit)", 97, 97, 64, true, 1000), type);
    check(make("k >= |A_i| on every row at d 256 (all -inf, early exit after 32-key steps)", 97, 97, 256, true, 97), type);
    check(make("ratio 1: k = |A_i| (all -inf)", 64, 64, 64, false, 0, 1.0), type);
    check(make("decode Nq 1, causal", 1, 300, 64, true, 32), type);
    check(make("Nq 1 Nk 1 (|A| = 1 <= k)", 1, 1, 64, false, 1), type);
    {
      Case c = make("seqK 0: every row empty, no layout", 5, 0, 64, true, 0, 0.5);
      c.nullLayout = true;
      check(c, type);
    }
    // Ties.
    {
      Case c = make("every score ties at 0", 97, 130, 64, false, 5);
      c.zeroKeysRange = 0;
      check(c, type);
    }
    {
      Case c = make("head dim 1 (19 distinct scores: heavy ties), ratio 0.3", 97, 200, 1, true, 0, 0.3);
      check(c, type);
    }
    {
      Case c = make("negative scale, values -1..1 (-0 scores)", 97, 130, 64, false, 20);
      c.intRange = 1;
      c.scale = -0.25;
      check(c, type);
    }
    // Head dims.
    check(make("head dim 59 (padded to 64, plain loads)", 97, 130, 59, true, 8), type);
    {
      Case c = make("head dim 111 (padded to 128, plain loads), bnhd", 97, 130, 111, false, 0, 0.2);
      c.bnhd = true;
      check(c, type);
    }
    check(make("head dim 128", 130, 200, 128, true, 12), type);
    check(make("head dim 256 (single-buffered K)", 97, 150, 256, true, 0, 0.15), type);
    if (f16) check(make("head dim 200 (padded to 256, plain loads)", 64, 97, 200, false, 7), type);
    // Sparse structures through a layout.
    {
      Case c = make("window [12, 12] non-causal (|A| = 25: 0.28 * 25 = 7.000000000000001, k 7)", 200, 200, 64, false, 0, 0.28);
      c.sparse = true;
      c.windowLeft = 12;
      c.windowRight = 12;
      check(c, type);
    }
    {
      Case c = make("window 40 + 4 sinks, causal, GQA 4/1", 200, 200, 64, true, 8);
      c.sparse = true;
      c.windowLeft = 39;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.heads = 4;
      check(c, type);
    }
    {
      Case c = make("selected blocks + window 16 + 2 sinks, causal, per head, batch 2", 200, 200, 64, true, 10);
      c.sparse = true;
      c.windowLeft = 15;
      c.windowRight = 0;
      c.globalTokens = 2;
      c.heads = 4;
      c.kvHeads = 2;
      c.batch = 2;
      c.selected = [](int b, int h, int I, int J) { return (I + J + h + b) % 3 == 0; };
      check(c, type);
    }
    {
      Case c = make("selected blocks only (empty layout rows), non-causal", 200, 200, 64, false, 0, 0.5);
      c.sparse = true;
      c.selected = [](int, int h, int I, int J) { return I != 1 && (J == I || J == (I + h + 2) % 4); };
      c.heads = 2;
      check(c, type);
    }
    {
      Case c = make("sinks only, causal Nq > Nk (empty rows)", 200, 97, 64, true, 2);
      c.sparse = true;
      c.globalTokens = 3;
      check(c, type);
    }
    {
      Case c = make("block size 128: selected + window 20 + 2 sinks, causal", 300, 300, 64, true, 12);
      c.blockSize = 128;
      c.sparse = true;
      c.windowLeft = 19;
      c.windowRight = 0;
      c.globalTokens = 2;
      c.heads = 2;
      c.selected = [](int, int h, int I, int J) { return J == 0 || (I + J + h) % 2 == 0; };
      check(c, type);
    }
    {
      Case c = make("block size 192: selected + window [10, 10], non-causal, Nq < Nk, bnhd", 97, 300, 64, false, 0, 0.2);
      c.blockSize = 192;
      c.sparse = true;
      c.windowLeft = 10;
      c.windowRight = 10;
      c.bnhd = true;
      c.selected = [](int, int, int, int J) { return J == 1; };
      check(c, type);
    }
    {
      Case c = make("block size 128 dense layout, causal", 200, 200, 128, true, 0, 0.25);
      c.blockSize = 128;
      check(c, type);
    }
    // Windows as wide as validation allows: position + window overflows 32 bits.
    {
      Case c = make("window [2^31 - 1, 2^31 - 1] non-causal, Nq < Nk", 97, 130, 64, false, 9);
      c.sparse = true;
      c.windowLeft = c.windowRight = 2147483647;
      check(c, type);
    }
    {
      Case c = make("window 2^31 - 1 causal ([2^31 - 2, 0]) + 2 sinks, Nq > Nk, ratio", 130, 97, 64, true, 0, 0.3);
      c.sparse = true;
      c.windowLeft = 2147483646;
      c.windowRight = 0;
      c.globalTokens = 2;
      check(c, type);
    }
    {
      Case c = make("window [2^31 - 101, 2^31 - 101] non-causal", 97, 130, 64, false, 5);
      c.sparse = true;
      c.windowLeft = c.windowRight = 2147483547;
      check(c, type);
    }
    // Float inputs: tau within rounding.
    {
      Case c = make("float, dense causal, no layout", 200, 200, 64, true, 16);
      c.intRange = -1;
      c.nullLayout = true;
      check(c, type);
    }
    {
      Case c = make("float, window 32 + 4 sinks, GQA 2/1, bnhd", 130, 200, 128, true, 0, 0.2);
      c.intRange = -1;
      c.sparse = true;
      c.windowLeft = 31;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.heads = 2;
      c.bnhd = true;
      check(c, type);
    }
    {
      Case c = make("float, head dim 256, non-causal", 64, 130, 256, false, 5);
      c.intRange = -1;
      check(c, type);
    }
    {
      Case c = make("float, head dim 59, k = 1", 97, 97, 59, false, 1);
      c.intRange = -1;
      check(c, type);
    }
  }
  if (!quick) {
    // 70000 tied keys of one row fall in one bin: a 16-bit counter would wrap to 4464 < k.
    Case c = make("a bin count above 65535 (70000 tied keys, k 5000)", 1, 70000, 64, false, 5000);
    c.zeroKeysRange = 0;
    c.nullLayout = true;
    check(c, MmaType::F16);
  }
  check_rejects();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d failed (%.1f s)\n", failures, secs);
  return failures ? 1 : 0;
}
