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

#include "../../attention/forward.h"
#include "../../cuda_compat.h"
#include "../../primitives.cuh"
#include "check_util.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Minimax coefficients of 2^f on [0, 1) (DESIGN.md §2), c0 first, rounded to float32.
const std::vector<float> kPoly3 = {1.0f, 0.695146143436431884765625f, 0.227564394474029541015625f, 0.077119089663028717041015625f};
const std::vector<float> kPoly5 = {1.0f, 0.693151414394378662109375f, 0.24016360938549041748046875f, 5.5802188813686370849609375e-2f,
                                   9.01452265679836273193359375e-3f, 1.86810153536498546600341796875e-3f};

struct Case {
  std::string name;
  int batch = 1, heads = 1, kvHeads = 1, seqQ = 64, seqK = 64, headDim = 64;
  bool bnhd = false;
  bool causal = false;
  // Sparse structure: allowed = causal ∩ (window ∪ sinks ∪ selected blocks). Without it: dense.
  bool sparse = false;
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  std::function<bool(int b, int h, int I, int J)> selected;  // null: none selected
  bool nullLayout = false;  // dense only: pass no layout, let the kernel enumerate blocks
  int blockSize = 64;       // of the layout (and of `selected`'s I, J); the kernel tiles by 64 anyway
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
  // Index of element (b, h, n, d) of a tensor with H heads and N tokens.
  auto at = [&](int nh, int N, int b, int h, int n, int d) -> std::size_t {
    return c.bnhd ? ((static_cast<std::size_t>(b) * N + n) * nh + h) * D + d : ((static_cast<std::size_t>(b) * nh + h) * N + n) * D + d;
  };
  const std::size_t nq = static_cast<std::size_t>(B) * H * Nq * D, nk = static_cast<std::size_t>(B) * Hkv * Nk * D;
  std::vector<std::uint16_t> qb(nq), kb(nk), vb(nk);
  std::vector<double> qf(nq), kf(nk), vf(nk);
  for (std::size_t i = 0; i < nq; i++) qf[i] = twin::to_float(qb[i] = encode(dist(rng) * c.inputScale, type), type);
  for (std::size_t i = 0; i < nk; i++) kf[i] = twin::to_float(kb[i] = encode(dist(rng) * c.inputScale, type), type);
  for (std::size_t i = 0; i < nk; i++) vf[i] = twin::to_float(vb[i] = encode(dist(rng), type), type);

  auto allowed = [&](int b, int h, int i, int j) {
    const int p = i + Nk - Nq;
    if (c.causal && j > p) return false;
    if (!c.sparse) return true;
    if (c.selected && c.selected(b, h, i / c.blockSize, j / c.blockSize)) return true;
    if (c.windowLeft >= 0 && j >= p - c.windowLeft && j <= p + c.windowRight) return true;
    return j < c.globalTokens;
  };

  // The layout, element by element: a key block is listed when some valid pair is allowed, full
  // when every valid pair is, selected when chosen (or dense).
  const int kBlock = c.blockSize;
  const int nQB = (Nq + kBlock - 1) / kBlock, nKB = (Nk + kBlock - 1) / kBlock;
  std::vector<std::int32_t> offsets(static_cast<std::size_t>(B) * H * nQB + 1, 0), indices;
  std::vector<std::uint8_t> flags;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int I = 0; I < nQB; I++) {
        for (int J = 0; J < nKB; J++) {
          bool any = false, all = true;
          for (int i = I * kBlock; i < std::min(Nq, (I + 1) * kBlock); i++)
            for (int j = J * kBlock; j < std::min(Nk, (J + 1) * kBlock); j++) {
              const bool a = allowed(b, h, i, j);
              any = any || a;
              all = all && a;
            }
          if (!any) continue;
          const bool sel = !c.sparse || (c.selected && c.selected(b, h, I, J));
          indices.push_back(J);
          flags.push_back(static_cast<std::uint8_t>((sel ? kBlockSelected : 0) | (all ? kBlockFull : 0)));
        }
        offsets[(static_cast<std::size_t>(b) * H + h) * nQB + I + 1] = static_cast<std::int32_t>(indices.size());
      }

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
          keep[j] = allowed(b, h, i, j);
          double dot = 0;
          for (int d = 0; d < D; d++) dot += qf[at(H, Nq, b, h, i, d)] * kf[at(Hkv, Nk, b, kvh, j, d)];
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
            for (int d = 0; d < D; d++) want[at(H, Nq, b, h, i, d)] += e * vf[at(Hkv, Nk, b, kvh, j, d)];
          }
        for (int d = 0; d < D; d++) want[at(H, Nq, b, h, i, d)] /= l;
        wantLse[row] = m + std::log(l);
      }
    }

  // The kernel.
  DeviceArray<std::uint16_t> dq(nq), dk(nk), dv(nk);
  DeviceArray<float> dout(nq), dlse(wantLse.size()), dtau(tau.size());
  DeviceArray<int> dkept(wantKept.size());
  DeviceArray<std::int32_t> doff(offsets.size()), didx(indices.size());
  DeviceArray<std::uint8_t> dflags(flags.size());
  dq.put(qb);
  dk.put(kb);
  dv.put(vb);
  dtau.put(tau);
  doff.put(offsets);
  didx.put(indices);
  dflags.put(flags);
  std::vector<float> poison(nq, std::numeric_limits<float>::quiet_NaN());
  dout.put(poison);
  dkept.put(std::vector<int>(wantKept.size(), -1));

  ForwardParams p;
  p.q = dq.ptr;
  p.k = dk.ptr;
  p.v = dv.ptr;
  p.o = dout.ptr;
  p.lse = dlse.ptr;
  p.keptCounts = dkept.ptr;
  auto strides = [&](int nh, int N, long long& row, long long& head, long long& batch) {
    row = c.bnhd ? static_cast<long long>(nh) * D : D;
    head = c.bnhd ? D : static_cast<long long>(N) * D;
    batch = static_cast<long long>(nh) * N * D;
  };
  strides(H, Nq, p.qRowStride, p.qHeadStride, p.qBatchStride);
  strides(Hkv, Nk, p.kRowStride, p.kHeadStride, p.kBatchStride);
  strides(Hkv, Nk, p.vRowStride, p.vHeadStride, p.vBatchStride);
  strides(H, Nq, p.oRowStride, p.oHeadStride, p.oBatchStride);
  p.batch = B;
  p.heads = H;
  p.kvHeads = Hkv;
  p.seqQ = Nq;
  p.seqK = Nk;
  p.headDim = D;
  p.scale = static_cast<float>(scale);
  p.causal = c.causal;
  p.windowLeft = c.windowLeft;
  p.windowRight = c.windowRight;
  p.globalTokens = c.globalTokens;
  p.blockSize = kBlock;  // with no layout the kernel ignores it (64-key tiles)
  if (!c.nullLayout) {
    p.layoutOffsets = doff.ptr;
    p.layoutIndices = didx.ptr;
    p.layoutFlags = dflags.ptr;
  }
  p.polyDegree = c.poly.empty() ? 0 : static_cast<int>(c.poly.size()) - 1;
  for (std::size_t i = 0; i < c.poly.size(); i++) p.polyCoefficients[i] = c.poly[i];
  for (int i = static_cast<int>(c.poly.size()); i < 9; i++) p.polyCoefficients[i] = 12345.0f;  // the launcher must ignore these
  p.threshold = c.topK > 0 ? dtau.ptr : nullptr;

  Result res;
  res.emptyRows = emptyRows;
  const cudaError_t err = attention_forward(p, type, cudaStreamPerThread);
  const cudaError_t last = cudaGetLastError();
  if (err != cudaSuccess || last != cudaSuccess) {
    res.why = std::string("launch: ") + cudaGetErrorString(err != cudaSuccess ? err : last);
    return res;
  }
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
          for (int d = 0; d < D; d++) zero = zero && out[at(H, Nq, b, h, i, d)] == 0.0f;
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

// --quick (the sanitizer builds, where each CUDA thread is an OS thread and a case runs 50 to
// 100 times slower): float16 only, and only the cases of at most 20000 (query, key) pairs, which
// still take every code path: each layout kind, head dim and block size has a small case.
bool quick = false;
constexpr long long kQuickPairs = 20000;

void check(const Case& c, MmaType type, std::uint32_t seed = 1) {
  if (quick && (type != MmaType::F16 || static_cast<long long>(c.seqQ) * c.seqK > kQuickPairs)) return;
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

void check_rejects() {
  ForwardParams p;
  p.batch = 1;
  p.heads = 3;
  p.kvHeads = 2;
  p.seqQ = p.seqK = 64;
  p.headDim = 64;
  auto rejected = [&] { return attention_forward(p, MmaType::BF16, cudaStreamPerThread) == cudaErrorInvalidValue; };
  bool ok = rejected();
  p.kvHeads = 1;
  for (int d : {0, 257}) {
    p.headDim = d;
    ok = ok && rejected();
  }
  p.headDim = 64;
  for (int bs : {0, 32, 96, 320}) {
    p.blockSize = bs;
    ok = ok && rejected();
  }
  report("launcher rejects heads % kvHeads != 0, headDim 0 and 257, blockSize 0, 32, 96, 320", ok);
  // The dynamic shared memory the compile gate checks occupancy with (cuda/gate.json).
  report("dynamic shared memory per instantiation: d 64 18432 B, d 128 34816 B, d 256 101376 B (cuda/gate.json)",
         attention_forward_smem_bytes(1) == 18432 && attention_forward_smem_bytes(64) == 18432 && attention_forward_smem_bytes(65) == 34816 &&
             attention_forward_smem_bytes(128) == 34816 && attention_forward_smem_bytes(129) == 101376 && attention_forward_smem_bytes(256) == 101376 &&
             attention_forward_smem_bytes(0) == 0 && attention_forward_smem_bytes(257) == 0);
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
  check_rejects();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d failed (%.1f s)\n", failures, secs);
  return failures ? 1 : 0;
}
