// The fused sparse attention forward kernel (cuda/attention) in the CPU model, against a float64
// host attention over the same rounded inputs and the same allowed sets. Layouts are built here
// element by element (an independent re-derivation of the rule in lib/mask.ts): dense causal,
// dense non-causal, window + sinks, hand-picked selected blocks, empty rows and empty layout
// rows, GQA, bhnd and bnhd, head dims 1..256 (64, 128 and 256 instantiations, odd ones padded),
// layouts at blockSize 64, 128, 192 and 256, exact and polynomial exp, a top-k threshold, and the
// per-row kept-key counts.
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

#include "../../attention/exp2_poly.cuh"
#include "../../attention/forward.h"
#include "../../cuda_compat.h"
#include "../../primitives.cuh"
#include "check_util.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Minimax coefficients of 2^f on [0, 1) (docs/contract.md#softmax-and-outputs), c0 first, rounded to float32.
const std::vector<float> kPoly3 = {1.0f, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f};
// Half of kPoly3 (exact): c0 = 0.5 < 1, p(f) in [0.5, 1) within the library's [2^-8, 2^8], so
// p * 2^-127 is subnormal; the exponent-bit addition turned it into a NaN.
const std::vector<float> kPolyHalf = {0.5f, 0.3475730717182159423828125f, 0.1137821972370147705078125f, 0.0385595448315143585205078125f};
const std::vector<float> kPoly5 = {1.0f, 0.693151414394378662109375f, 0.24016360938549041748046875f, 5.5802188813686370849609375e-2f,
                                   9.01452265679836273193359375e-3f, 1.86810153536498546600341796875e-3f};

struct Case : MaskedCase {
  std::vector<float> poly;  // empty: exact exp
  int topK = 0;             // > 0: per-row threshold at the topK-th largest allowed score
  float inputScale = 1.0f;  // q, k ~ N(0, inputScale^2)
};

struct Result {
  double relErr = 0, lseErr = 0;
  int emptyRows = 0;
  std::string why;
};

// E(x) in float64 following the same formula as the kernel (x = s - m, natural units).
double host_exp(double x, const std::vector<float>& poly) {
  if (poly.empty()) return std::exp(x);
  double t = std::max(x * 1.4426950408889634, -127.0);
  const double n = std::floor(t);
  const double f = t - n;
  double p = poly.back();
  for (int d = static_cast<int>(poly.size()) - 2; d >= 0; --d) p = p * f + poly[d];
  return std::ldexp(p, static_cast<int>(n));
}

Result run_case(const Case& c, MmaType type, std::uint32_t seed) {
  const int B = c.batch, H = c.heads, Hkv = c.kvHeads, Nq = c.seqQ, Nk = c.seqK, D = c.headDim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const std::size_t nq = c.elements(false), nk = c.elements(true);
  std::vector<std::uint16_t> qb(nq), kb(nk), vb(nk);
  std::vector<double> qf(nq), kf(nk), vf(nk);
  for (std::size_t i = 0; i < nq; i++) qf[i] = twin::to_float(qb[i] = encode(dist(rng) * c.inputScale, type), type);
  for (std::size_t i = 0; i < nk; i++) kf[i] = twin::to_float(kb[i] = encode(dist(rng) * c.inputScale, type), type);
  for (std::size_t i = 0; i < nk; i++) vf[i] = twin::to_float(vb[i] = encode(dist(rng), type), type);
  const HostLayout layout = layout_of(c);

  // Float64 scores, thresholds, oracle O and LSE.
  std::vector<double> want(nq, 0.0), wantLse(static_cast<std::size_t>(B) * H * Nq);
  std::vector<float> tau(static_cast<std::size_t>(B) * H * Nq, -std::numeric_limits<float>::infinity());
  std::vector<int> wantKept(static_cast<std::size_t>(B) * H * Nq, 0);
  int emptyRows = 0;
  std::vector<double> s(Nk);
  std::vector<char> keep(Nk);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int kvh = h / (H / Hkv);
      for (int i = 0; i < Nq; i++) {
        const std::size_t row = (static_cast<std::size_t>(b) * H + h) * Nq + i;
        std::vector<double> allowedScores;
        for (int j = 0; j < Nk; j++) {
          keep[j] = c.allowed(b, h, i, j);
          double dot = 0;
          for (int d = 0; d < D; d++) dot += qf[c.index(false, b, h, i, d)] * kf[c.index(true, b, kvh, j, d)];
          s[j] = scale * dot;
          if (keep[j]) allowedScores.push_back(s[j]);
        }
        if (c.topK > 0 && static_cast<int>(allowedScores.size()) > c.topK) {
          std::sort(allowedScores.begin(), allowedScores.end(), std::greater<double>());
          // Halfway between the k-th and (k+1)-th largest: the float32 scores of the kernel land
          // on the same side unless two scores tie within rounding.
          const double th = 0.5 * (allowedScores[c.topK - 1] + allowedScores[c.topK]);
          tau[row] = static_cast<float>(th);
          for (int j = 0; j < Nk; j++) keep[j] = keep[j] && s[j] >= static_cast<double>(tau[row]);
        }
        double m = -kInf;
        for (int j = 0; j < Nk; j++)
          if (keep[j]) {
            m = std::max(m, s[j]);
            wantKept[row]++;
          }
        if (m == -kInf) {
          wantLse[row] = -kInf;
          emptyRows++;
          continue;
        }
        double l = 0;
        for (int j = 0; j < Nk; j++)
          if (keep[j]) {
            const double e = host_exp(s[j] - m, c.poly);
            l += e;
            for (int d = 0; d < D; d++) want[c.index(false, b, h, i, d)] += e * vf[c.index(true, b, kvh, j, d)];
          }
        for (int d = 0; d < D; d++) want[c.index(false, b, h, i, d)] /= l;
        wantLse[row] = m + std::log(l);
      }
    }

  // The kernel.
  DeviceArray<std::uint16_t> dq(nq), dk(nk), dv(nk);
  DeviceArray<float> dout(nq), dlse(wantLse.size()), dtau(tau.size());
  DeviceArray<int> dkept(wantKept.size());
  const DeviceLayout dlayout(layout);
  dq.put(qb);
  dk.put(kb);
  dv.put(vb);
  dtau.put(tau);
  dout.poison();
  dkept.put(std::vector<int>(wantKept.size(), -1));

  ForwardParams p = forward_params(c, dlayout, dq.ptr, dk.ptr, static_cast<float>(scale));
  p.v = dv.ptr;
  p.o = dout.ptr;
  p.lse = dlse.ptr;
  p.keptCounts = dkept.ptr;
  p.polyDegree = c.poly.empty() ? 0 : static_cast<int>(c.poly.size()) - 1;
  for (std::size_t i = 0; i < c.poly.size(); i++) p.polyCoefficients[i] = c.poly[i];
  for (int i = static_cast<int>(c.poly.size()); i < 9; i++) p.polyCoefficients[i] = 12345.0f;  // the launcher must ignore these
  p.threshold = c.topK > 0 ? dtau.ptr : nullptr;

  Result res;
  res.emptyRows = emptyRows;
  res.why = launch_failure(attention_forward(p, type, cudaStreamPerThread));
  if (!res.why.empty()) return res;
  const std::vector<float> out = dout.get(), lse = dlse.get();
  const std::vector<int> kept = dkept.get();
  for (std::size_t row = 0; row < kept.size(); row++) {
    if (kept[row] != wantKept[row]) {
      res.why = "kept keys of row " + std::to_string(row) + ": " + std::to_string(kept[row]) + ", want " + std::to_string(wantKept[row]);
      return res;
    }
  }
  double e2 = 0, n2 = 0;
  for (std::size_t i = 0; i < nq; i++) {
    if (!std::isfinite(out[i])) {
      res.why = "non-finite output at element " + std::to_string(i);
      return res;
    }
    e2 += (out[i] - want[i]) * (out[i] - want[i]);
    n2 += want[i] * want[i];
  }
  res.relErr = n2 > 0 ? std::sqrt(e2 / n2) : std::sqrt(e2);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < Nq; i++) {
        const std::size_t row = (static_cast<std::size_t>(b) * H + h) * Nq + i;
        if (wantLse[row] == -kInf) {
          bool zero = true;
          for (int d = 0; d < D; d++) zero = zero && out[c.index(false, b, h, i, d)] == 0.0f;
          if (!(lse[row] == -std::numeric_limits<float>::infinity()) || !zero) {
            res.why = "empty row " + std::to_string(i) + " (b " + std::to_string(b) + ", h " + std::to_string(h) + "): LSE " + std::to_string(lse[row]) +
                      (zero ? "" : ", O not zero");
            return res;
          }
        } else if (!std::isfinite(lse[row])) {
          res.why = "LSE of row " + std::to_string(i) + " is " + std::to_string(lse[row]) + ", want " + std::to_string(wantLse[row]);
          return res;
        } else {
          res.lseErr = std::max(res.lseErr, std::fabs(lse[row] - wantLse[row]));
        }
      }
  return res;
}

constexpr long long kQuickPairs = 20000;  // --quick: see skipped_when_quick

void check(const Case& c, MmaType type, std::uint32_t seed = 1) {
  if (skipped_when_quick(c, type, kQuickPairs)) return;
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run_case(c, type, seed);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double tol = type == MmaType::F16 ? 5e-3 : 1.5e-2;
  const double lseTol = 2e-3;
  char name[512];
  std::snprintf(name, sizeof name, "%s %s B%d H%d/%d Nq%d Nk%d D%d %s block %d (rel. error %.1e, LSE error %.1e, %d empty rows, %.0f ms)",
                c.name.c_str(), type == MmaType::BF16 ? "bf16" : "f16", c.batch, c.heads, c.kvHeads, c.seqQ, c.seqK, c.headDim, c.bnhd ? "bnhd" : "bhnd",
                c.blockSize, r.relErr, r.lseErr, r.emptyRows, ms);
  std::string why = r.why;
  if (why.empty() && !(r.relErr < tol)) why = "relative error above " + std::to_string(tol);
  if (why.empty() && !(r.lseErr < lseTol)) why = "LSE error above " + std::to_string(lseTol);
  report(name, why.empty(), why);
}

Case dense(const std::string& name, int Nq, int Nk, int D, bool causal) {
  Case c;
  c.name = name;
  c.seqQ = Nq;
  c.seqK = Nk;
  c.headDim = D;
  c.causal = causal;
  return c;
}

// ---- exp2_poly against its host twin --------------------------------------------------------------

// The host twin of exp2_poly.cuh: the same Horner in float32, then p * 2^n rounded once by
// std::ldexp (gradual underflow), an independent construction of the power of two.
float host_exp2_poly(float t, const std::vector<float>& c) {
  t = std::max(t, -127.0f);
  const float n = std::floor(t);
  const float f = t - n;
  float p = c.back();
  for (int d = static_cast<int>(c.size()) - 2; d >= 0; --d) p = std::fma(p, f, c[d]);
  return std::ldexp(p, static_cast<int>(n));
}

struct Coefficients {
  float c[9];
};

// out[i] = exp2_poly<Degree>(t[i]) (coefficients above the polynomial's degree zero, as the
// launcher pads them).
template <int Degree>
__global__ void exp2_poly_kernel(const float* t, float* out, int n, Coefficients c) {
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) out[i] = exp2_poly<Degree>(t[i], c.c);
}

template <int Degree>
void check_exp2_poly(const std::string& what, const std::vector<float>& poly) {
  // Below, at and just above the clamp, through the subnormal range to 0.
  std::vector<float> t = {-1000.0f, -128.0f, -127.5f, -127.0f, std::nextafter(-127.0f, 0.0f), -126.999f, -126.5f, -126.0f, std::nextafter(-126.0f, 0.0f),
                          -125.25f, -100.0f, -88.0f * 1.4426950408889634f, -1.0f, -0.5f, std::nextafter(0.0f, -1.0f), 0.0f};
  for (float x = -127.0f; x < 0.0f; x += 0.0625f) t.push_back(x);
  Coefficients c = {};
  for (std::size_t i = 0; i < poly.size(); i++) c.c[i] = poly[i];
  DeviceArray<float> dt(t.size()), dout(t.size());
  dt.put(t);
  dout.poison();
  PSA_LAUNCH(exp2_poly_kernel<Degree>, dim3(1), dim3(128), 0, cudaStreamPerThread)(dt.ptr, dout.ptr, static_cast<int>(t.size()), c);
  const std::vector<float> got = dout.get();
  std::string why;
  int subnormal = 0;
  for (std::size_t i = 0; i < t.size() && why.empty(); i++) {
    const float want = host_exp2_poly(t[i], poly);
    if (std::fpclassify(got[i]) == FP_SUBNORMAL) subnormal++;
    char buf[160];
    if (std::isnan(got[i]) || got[i] <= 0.0f || std::memcmp(&got[i], &want, 4) != 0) {
      std::snprintf(buf, sizeof buf, "t %.9g: device %a, host twin %a", t[i], got[i], want);
      why = buf;
    }
  }
  if (why.empty() && subnormal == 0) why = "no subnormal result near the clamp";
  report("exp2_poly equals its host twin bit for bit, positive, subnormal near the clamp: " + what, why.empty(), why);
}

void check_rejects() {
  ForwardParams p;
  p.shape = Shape{1, 3, 2, 64, 64, 64};
  auto rejected = [&] { return attention_forward(p, MmaType::BF16, cudaStreamPerThread) == cudaErrorInvalidValue; };
  bool ok = rejected();
  p.shape.kvHeads = 1;
  for (int d : {0, 257}) {
    p.shape.headDim = d;
    ok = ok && rejected();
  }
  p.shape.headDim = 64;
  for (int bs : {0, 32, 96, 320}) {
    p.blockSize = bs;
    ok = ok && rejected();
  }
  report("launcher rejects heads % kvHeads != 0, headDim 0 and 257, blockSize 0, 32, 96, 320", ok);
  // The launchers' dynamic shared memory: the traits' figures, which the compile gate's occupancy uses too.
  report("dynamic shared memory per instantiation: d 64 18432 B, d 128 34816 B, d 256 67584 B",
         attention_forward_smem_bytes(1) == 18432 && attention_forward_smem_bytes(64) == 18432 && attention_forward_smem_bytes(65) == 34816 &&
             attention_forward_smem_bytes(128) == 34816 && attention_forward_smem_bytes(129) == 67584 && attention_forward_smem_bytes(256) == 67584 &&
             attention_forward_smem_bytes(0) == 0 && attention_forward_smem_bytes(257) == 0);
  report("dynamic shared memory of 128-row tiles: d 64 36864 B, d 128 52224 B, none above",
         attention_forward_smem_bytes(1, 128) == 36864 && attention_forward_smem_bytes(64, 128) == 36864 && attention_forward_smem_bytes(65, 128) == 52224 &&
             attention_forward_smem_bytes(128, 128) == 52224 && attention_forward_smem_bytes(129, 128) == 0 && attention_forward_smem_bytes(64, 32) == 0);
}

}  // namespace

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (MmaType type : {MmaType::F16, MmaType::BF16}) {
    // Dense, through the kernel's own block enumeration (no layout) and through a layout.
    {
      Case c = dense("dense causal, no layout", 200, 200, 64, true);
      c.nullLayout = true;
      c.heads = 4;
      c.kvHeads = 1;  // GQA ratio 4
      check(c, type);
    }
    check(dense("dense causal, layout", 200, 200, 64, true), type);
    {
      Case c = dense("dense non-causal, layout, Nq < Nk", 97, 200, 64, false);
      c.bnhd = true;
      c.heads = 4;
      c.kvHeads = 1;
      check(c, type);
    }
    {
      Case c = dense("dense non-causal, no layout, Nq > Nk", 200, 97, 64, false);
      c.nullLayout = true;
      check(c, type);
    }
    {
      Case c = dense("dense causal Nq > Nk (bottom-right: empty rows), no layout", 200, 97, 64, true);
      c.nullLayout = true;
      c.bnhd = true;
      check(c, type);
    }
    check(dense("dense causal Nq > Nk (bottom-right: empty rows), layout", 200, 97, 64, true), type);
    check(dense("decode Nq 1, causal", 1, 200, 64, true), type);
    check(dense("Nq 1 Nk 1", 1, 1, 64, false), type);
    check(dense("causal Nq 64 Nk 64", 64, 64, 64, true), type);
    check(dense("odd head dim 59 (padded to 64, plain loads)", 97, 97, 59, true), type);
    {
      Case c = dense("head dim 128", 97, 200, 128, true);
      c.bnhd = true;
      check(c, type);
    }
    if (type == MmaType::BF16) check(dense("head dim 96 (padded to 128)", 64, 97, 96, false), type);
    // Sparse structures.
    {
      Case c = dense("window 40 + 4 sinks, causal", 200, 200, 64, true);
      c.sparse = true;
      c.windowLeft = 39;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.heads = 4;
      c.kvHeads = 1;
      check(c, type);
    }
    {
      Case c = dense("window [20, 10] non-causal, Nq < Nk", 97, 200, 64, false);
      c.sparse = true;
      c.windowLeft = 20;
      c.windowRight = 10;
      c.bnhd = true;
      check(c, type);
    }
    {
      Case c = dense("sinks only, causal Nq > Nk (empty rows)", 200, 97, 64, true);
      c.sparse = true;
      c.globalTokens = 3;
      check(c, type);
    }
    {
      Case c = dense("selected blocks + window 16 + 2 sinks, causal, per head", 200, 200, 64, true);
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
      Case c = dense("selected blocks only (empty layout rows), non-causal", 200, 200, 64, false);
      c.sparse = true;
      c.selected = [](int, int h, int I, int J) { return I != 1 && (J == I || J == (I + h + 2) % 4); };
      c.heads = 2;
      check(c, type);
    }
    {
      Case c = dense("selected blocks + window, D 59, bnhd", 97, 200, 59, true);
      c.sparse = true;
      c.windowLeft = 30;
      c.windowRight = 0;
      c.bnhd = true;
      c.selected = [](int, int, int I, int J) { return J == 0 || J == I; };
      check(c, type);
    }
    // Windows as wide as validation allows: position + window overflows 32 bits.
    for (int w : {2147483647, 2147483646, 2147483547}) {
      Case c = dense("window [" + std::to_string(w) + ", " + std::to_string(w) + "] non-causal, Nq < Nk", 97, 200, 64, false);
      c.sparse = true;
      c.windowLeft = c.windowRight = w;
      check(c, type);
    }
    {
      Case c = dense("window 2^31 - 1 causal ([2^31 - 2, 0]) + 2 sinks, Nq > Nk", 200, 97, 64, true);
      c.sparse = true;
      c.windowLeft = 2147483646;
      c.windowRight = 0;
      c.globalTokens = 2;
      check(c, type);
    }
    // Head dims outside the tuned 64 and 128: 256 and 129..255 (padded to 256), odd ones (plain loads).
    {
      Case c = dense("head dim 256, dense causal, no layout", 97, 200, 256, true);
      c.nullLayout = true;
      c.heads = 2;
      c.kvHeads = 1;
      check(c, type);
    }
    {
      Case c = dense("head dim 200 (padded to 256), window + sinks + selected, bnhd", 97, 200, 200, true);
      c.sparse = true;
      c.windowLeft = 31;
      c.windowRight = 0;
      c.globalTokens = 2;
      c.bnhd = true;
      c.selected = [](int, int, int I, int J) { return J == I || J == 0; };
      check(c, type);
    }
    if (type == MmaType::F16) check(dense("head dim 129 (padded to 256, plain loads), non-causal", 64, 97, 129, false), type);
    check(dense("head dim 111 (padded to 128, plain loads), causal", 97, 97, 111, true), type);
    {
      Case c = dense("head dim 1 (padded to 64, plain loads), non-causal, no layout", 97, 97, 1, false);
      c.nullLayout = true;
      check(c, type);
    }
    // Layouts at block sizes above the kernel's 64-key tile: each entry is blockSize / 64 tiles.
    {
      Case c = dense("block 128: dense causal layout", 300, 300, 64, true);
      c.blockSize = 128;
      c.heads = 2;
      c.kvHeads = 1;
      check(c, type);
    }
    {
      Case c = dense("block 128: selected + window 40 + 4 sinks, causal, Nq < Nk", 200, 300, 128, true);
      c.blockSize = 128;
      c.sparse = true;
      c.windowLeft = 39;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.heads = 2;
      c.selected = [](int, int h, int I, int J) { return (I + J + h) % 2 == 0; };
      check(c, type);
    }
    {
      Case c = dense("block 192: selected blocks only, non-causal (empty layout rows)", 300, 300, 64, false);
      c.blockSize = 192;
      c.sparse = true;
      c.bnhd = true;
      c.selected = [](int, int, int I, int J) { return I == 0 && J == 1; };
      check(c, type);
    }
    {
      Case c = dense("block 256: window [20, 10] + selected, non-causal, last block short", 300, 300, 64, false);
      c.blockSize = 256;
      c.sparse = true;
      c.windowLeft = 20;
      c.windowRight = 10;
      c.selected = [](int, int, int I, int J) { return J == 1 - I; };
      check(c, type);
    }
    {
      Case c = dense("block 256: top-k 12 + poly 3, dense causal layout, D 256", 97, 300, 256, true);
      c.blockSize = 256;
      c.topK = 12;
      c.poly = kPoly3;
      check(c, type);
    }
    {
      Case c = dense("block 256 on the launch, no layout (64-key tiles)", 97, 200, 64, true);
      c.blockSize = 256;
      c.nullLayout = true;
      check(c, type);
    }
    // Polynomial exp and top-k.
    {
      Case c = dense("poly degree 3, window + sinks + selected", 200, 200, 64, true);
      c.sparse = true;
      c.windowLeft = 31;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.selected = [](int, int, int I, int J) { return J == I / 2; };
      c.poly = kPoly3;
      check(c, type);
    }
    {
      Case c = dense("poly degree 3, dense causal, no layout, D 128", 97, 97, 128, true);
      c.nullLayout = true;
      c.poly = kPoly3;
      check(c, type);
    }
    {
      Case c = dense("poly degree 5 (generic Horner), dense non-causal", 97, 97, 64, false);
      c.poly = kPoly5;
      c.inputScale = 2.0f;
      check(c, type);
    }
    {
      // Scores up to ~150 nats below the row max: E(x) near and at the exp2 clamp, c0 < 1.
      Case c = dense("poly degree 3 with c0 0.5, scores far below the row max (exp2 clamp)", 97, 97, 64, false);
      c.poly = kPolyHalf;
      c.inputScale = 6.0f;
      check(c, type);
    }
    {
      Case c = dense("top-k 16 threshold, dense causal", 200, 200, 64, true);
      c.topK = 16;
      c.heads = 2;
      c.kvHeads = 1;
      check(c, type);
    }
    {
      Case c = dense("top-k 8 threshold + poly 3, window 64 + sinks", 97, 200, 64, true);
      c.sparse = true;
      c.windowLeft = 63;
      c.windowRight = 0;
      c.globalTokens = 4;
      c.topK = 8;
      c.poly = kPoly3;
      check(c, type);
    }
  }
  check_exp2_poly<3>("degree 3, c0 = 1", kPoly3);
  check_exp2_poly<8>("degree 3 padded to 8, c0 = 1", kPoly3);
  check_exp2_poly<3>("degree 3, c0 = 0.5", kPolyHalf);
  check_exp2_poly<8>("degree 3 padded to 8, c0 = 0.5", kPolyHalf);
  check_rejects();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d failed (%.1f s)\n", failures, secs);
  return failures ? 1 : 0;
}
