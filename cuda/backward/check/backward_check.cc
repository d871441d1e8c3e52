// The backward kernels (cuda/backward) in the CPU model, through the whole device call
// (run_backward: conversions, the forward recomputed, the pre-pass, the transposed layout, dK,
// dV and dQ), against a float64 host backward over the same rounded inputs and the same kept
// sets: the allowed keys of check_util.h's host rule, the layout built from it element by
// element, a top-k threshold placed between two scores. Dense (no layout) and layouts at block
// sizes 64 to 256, window, sinks, selected blocks, empty rows, GQA, bhnd and bnhd, head dims 1
// to 128, exact and polynomial exp; and the same call twice gives the same bits (GQA and layout cases).
// Prints "PASS <case>" or "FAIL <case>: <why>" per case and "<n> failed"; exits 1 if any failed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../../backward_api.h"
#include "../../emu/tests/check_util.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

// Minimax coefficients of 2^f on [0, 1), c0 first, rounded to float32 (the library's degree 3).
const std::vector<float> kPoly3 = {1.0f, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f};

struct Case : MaskedCase {
  std::vector<float> poly;  // empty: exact exp
  int topK = 0;             // > 0: keep the topK largest allowed scores of each row
  bool repeat = false;      // run twice and require the same bits
};

// E(x) and E'(x) in float64 for x = s - m (natural units): exp, or p(f) 2^n and log2(e) p'(f) 2^n.
void host_exp(double x, const std::vector<float>& poly, double& e, double& de) {
  if (poly.empty()) {
    e = de = std::exp(x);
    return;
  }
  const double t = x * 1.4426950408889634;
  const double tc = std::max(t, -127.0);
  const double n = std::floor(tc), f = tc - n;
  double p = poly.back(), dp = 0;
  for (int d = static_cast<int>(poly.size()) - 2; d >= 0; --d) {
    dp = dp * f + p;
    p = p * f + poly[d];
  }
  e = std::ldexp(p, static_cast<int>(n));
  de = t < -127.0 ? 0.0 : 1.4426950408889634 * std::ldexp(dp, static_cast<int>(n));
}

double decode(std::uint16_t u, MmaType type) {
  if (type == MmaType::BF16) {
    __nv_bfloat16 b;
    std::memcpy(&b, &u, 2);
    return __bfloat162float(b);
  }
  __half h;
  std::memcpy(&h, &u, 2);
  return __half2float(h);
}

struct Grads {
  std::vector<double> dq, dk, dv;
};

// The float64 backward (docs/backward.md): kept sets and row maxima constants.
Grads host_backward(const Case& c, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& dO,
                    double scale, std::vector<float>& tau) {
  Grads g{std::vector<double>(q.size()), std::vector<double>(k.size()), std::vector<double>(k.size())};
  const int D = c.headDim, group = c.heads / c.kvHeads;
  tau.assign(static_cast<std::size_t>(c.batch) * c.heads * c.seqQ, -INFINITY);
  std::vector<double> s(c.seqK), P(c.seqK), dE(c.seqK), o(D);
  std::vector<char> keep(c.seqK);
  for (int b = 0; b < c.batch; b++)
    for (int h = 0; h < c.heads; h++)
      for (int i = 0; i < c.seqQ; i++) {
        const int hk = h / group;
        std::vector<double> kept;
        for (int j = 0; j < c.seqK; j++) {
          double dot = 0;
          for (int d = 0; d < D; d++) dot += q[c.index(false, b, h, i, d)] * k[c.index(true, b, hk, j, d)];
          s[j] = scale * dot;
          keep[j] = c.allowed(b, h, i, j);
          if (keep[j]) kept.push_back(s[j]);
        }
        const std::size_t row = (static_cast<std::size_t>(b) * c.heads + h) * c.seqQ + i;
        if (c.topK > 0 && static_cast<int>(kept.size()) > c.topK) {
          std::sort(kept.begin(), kept.end(), std::greater<double>());
          tau[row] = static_cast<float>(0.5 * (kept[c.topK - 1] + kept[c.topK]));
          for (int j = 0; j < c.seqK; j++) keep[j] = keep[j] && s[j] >= static_cast<double>(tau[row]);
        }
        double m = -INFINITY;
        for (int j = 0; j < c.seqK; j++) if (keep[j]) m = std::max(m, s[j]);
        if (m == -INFINITY) continue;
        double Z = 0;
        for (int j = 0; j < c.seqK; j++) {
          P[j] = dE[j] = 0;
          if (keep[j]) host_exp(s[j] - m, c.poly, P[j], dE[j]);
          Z += P[j];
        }
        std::fill(o.begin(), o.end(), 0.0);
        for (int j = 0; j < c.seqK; j++)
          for (int d = 0; d < D && keep[j]; d++) o[d] += P[j] / Z * v[c.index(true, b, hk, j, d)];
        double delta = 0;
        for (int d = 0; d < D; d++) delta += dO[c.index(false, b, h, i, d)] * o[d];
        for (int j = 0; j < c.seqK; j++) {
          if (!keep[j]) continue;
          double dP = 0;
          for (int d = 0; d < D; d++) dP += dO[c.index(false, b, h, i, d)] * v[c.index(true, b, hk, j, d)];
          const double dS = dE[j] / Z * (dP - delta);
          for (int d = 0; d < D; d++) {
            g.dq[c.index(false, b, h, i, d)] += scale * dS * k[c.index(true, b, hk, j, d)];
            g.dk[c.index(true, b, hk, j, d)] += scale * dS * q[c.index(false, b, h, i, d)];
            g.dv[c.index(true, b, hk, j, d)] += P[j] / Z * dO[c.index(false, b, h, i, d)];
          }
        }
      }
  return g;
}

double rel_frob(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); i++) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct DeviceInput {
  Buffer buf;
  DeviceInput(const std::vector<float>& host, DType type) {
    alloc_buffer(buf, host.size() * dtype_size(type), 0);
    upload_f32(host.data(), host.size(), type, buf);
  }
  ~DeviceInput() { free_buffer(buf); }
};

std::vector<float> download(Buffer& b, std::size_t n) {
  std::vector<float> h(n);
  download_f32(b, DType::F32, n, h.data());
  free_buffer(b);
  return h;
}

void check(const Case& c, MmaType type, unsigned seed = 1) {
  if (skipped_when_quick(c, type, 40000)) return;
  const auto t0 = std::chrono::steady_clock::now();
  const DType dt = type == MmaType::BF16 ? DType::BF16 : DType::F16;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::size_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = normal(rng);
    return x;
  };
  const std::vector<float> q = fill(c.elements(false)), k = fill(c.elements(true)), v = fill(c.elements(true)), dO = fill(c.elements(false));
  // The host sees the inputs as the device stores them (rounded to 16 bits); dO in float32.
  auto rounded = [&](const std::vector<float>& x) {
    std::vector<double> r(x.size());
    for (std::size_t i = 0; i < x.size(); i++) r[i] = decode(encode(x[i], type), type);
    return r;
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.headDim));
  std::vector<float> tau;
  const Grads want = host_backward(c, rounded(q), rounded(k), rounded(v), std::vector<double>(dO.begin(), dO.end()), static_cast<float>(scale), tau);

  DeviceInput dq16(q, dt), dk16(k, dt), dv16(v, DType::F32), ddO(dO, DType::F32);  // v in float32: the call converts it
  BackwardRequest req;
  AttentionRequest& r = req.problem;
  r.q = dq16.buf;
  r.k = dk16.buf;
  r.v = dv16.buf;
  r.qType = r.kType = dt;
  r.vType = DType::F32;
  r.compute = dt;
  r.batch = c.batch, r.heads = c.heads, r.kvHeads = c.kvHeads, r.seqQ = c.seqQ, r.seqK = c.seqK, r.headDim = c.headDim;
  r.bnhd = c.bnhd;
  r.scale = static_cast<float>(scale);
  r.causal = c.causal;
  r.windowLeft = c.windowLeft, r.windowRight = c.windowRight, r.globalTokens = c.globalTokens;
  r.blockSize = c.blockSize;
  r.sparse = r.hasLayout = !c.nullLayout;
  if (r.sparse) {
    const HostLayout l = layout_of(c);
    r.layoutOffsets = l.offsets;
    r.layoutIndices = l.indices;
    r.layoutFlags = l.flags;
  }
  r.polyDegree = c.poly.empty() ? 0 : static_cast<int>(c.poly.size()) - 1;
  std::copy(c.poly.begin(), c.poly.end(), r.polyCoefficients);
  req.dO = ddO.buf;
  req.dOType = DType::F32;
  if (c.topK > 0) req.thresholds = tau;

  std::string why;
  double err[3] = {0, 0, 0};
  BackwardResult out, again;
  const Status s = run_backward(req, out);
  if (!s.ok()) why = "run_backward: " + s.message;
  if (why.empty()) {
    const std::vector<float> gq = download(out.dq, q.size()), gk = download(out.dk, k.size()), gv = download(out.dv, v.size());
    err[0] = rel_frob(gq, want.dq);
    err[1] = rel_frob(gk, want.dk);
    err[2] = rel_frob(gv, want.dv);
    const double tol = type == MmaType::F16 ? 1e-2 : 3e-2;
    for (int i = 0; i < 3; i++) {
      if (!(err[i] < tol)) why = std::string("d") + "qkv"[i] + " relative error above " + std::to_string(tol);
    }
    // Deterministic: a second call gives the same bits.
    const Status s2 = c.repeat ? run_backward(req, again) : Status::success();
    if (!s2.ok() && why.empty()) why = "second run_backward: " + s2.message;
    if (c.repeat && s2.ok()) {
      const std::vector<float> aq = download(again.dq, q.size()), ak = download(again.dk, k.size()), av = download(again.dv, v.size());
      if (why.empty() && (std::memcmp(aq.data(), gq.data(), gq.size() * 4) || std::memcmp(ak.data(), gk.data(), gk.size() * 4) || std::memcmp(av.data(), gv.data(), gv.size() * 4))) {
        why = "a second call gave different bits";
      }
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char name[512];
  std::snprintf(name, sizeof name, "%s %s B%d H%d/%d Nq%d Nk%d D%d %s block %d (rel. error dq %.1e dk %.1e dv %.1e, %.0f ms)", c.name.c_str(),
                type == MmaType::BF16 ? "bf16" : "f16", c.batch, c.heads, c.kvHeads, c.seqQ, c.seqK, c.headDim, c.bnhd ? "bnhd" : "bhnd", c.blockSize, err[0], err[1],
                err[2], ms);
  report(name, why.empty(), why);
}

Case make(const std::string& name, int Nq, int Nk, int D, bool causal) {
  Case c;
  c.name = name;
  c.seqQ = Nq;
  c.seqK = Nk;
  c.headDim = D;
  c.causal = causal;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  for (MmaType type : {MmaType::F16, MmaType::BF16}) {
    {
      Case c = make("dense causal, no layout, GQA 4", 130, 130, 64, true);
      c.nullLayout = true;
      c.heads = 4;
      c.repeat = true;
      check(c, type);
    }
    check(make("dense causal, layout", 130, 130, 64, true), type);
    {
      Case c = make("dense non-causal, no layout, Nq < Nk, bnhd, GQA 2", 70, 150, 64, false);
      c.nullLayout = true;
      c.bnhd = true;
      c.heads = 2;
      check(c, type);
    }
    {
      Case c = make("causal Nq > Nk (empty rows), no layout", 150, 70, 64, true);
      c.nullLayout = true;
      check(c, type);
    }
    check(make("causal Nq > Nk (empty rows), layout", 150, 70, 64, true), type);
    check(make("head dim 1", 97, 97, 1, true), type);
    check(make("odd head dim 59 (plain loads)", 97, 97, 59, true), type);
    {
      Case c = make("head dim 111, bnhd", 97, 120, 111, true);
      c.bnhd = true;
      check(c, type);
    }
    check(make("head dim 128", 97, 97, 128, true), type);
    {
      Case c = make("window 40 + sinks 4 + selected blocks, GQA 2", 200, 200, 64, true);
      c.sparse = true;
      c.heads = 2;
      c.windowLeft = 40, c.windowRight = 0, c.globalTokens = 4;
      c.selected = [](int, int h, int I, int J) { return (I + J + h) % 3 == 0; };
      c.repeat = true;
      check(c, type);
    }
    for (int bs : {128, 192, 256}) {
      Case c = make("window [30, 10] + selected blocks, non-causal, block " + std::to_string(bs), 260, 270, 64, false);
      c.sparse = true;
      c.blockSize = bs;
      c.windowLeft = 30, c.windowRight = 10;
      c.selected = [](int, int, int I, int J) { return (I + 2 * J) % 3 == 1; };
      check(c, type);
    }
    {
      Case c = make("top-k 9, causal", 140, 140, 64, true);
      c.topK = 9;
      c.nullLayout = true;
      check(c, type);
    }
    {
      Case c = make("polynomial exp, window + sinks, bnhd", 160, 160, 64, true);
      c.poly = kPoly3;
      c.sparse = true;
      c.bnhd = true;
      c.windowLeft = 50, c.windowRight = 0, c.globalTokens = 2;
      check(c, type);
    }
    {
      Case c = make("polynomial exp + top-k 12, dense, head dim 128", 100, 100, 128, true);
      c.poly = kPoly3;
      c.topK = 12;
      c.nullLayout = true;
      check(c, type);
    }
  }
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
