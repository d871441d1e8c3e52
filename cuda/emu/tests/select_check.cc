// Block selection (cuda/attention/select.h) in the CPU model, against a float64 host port of
// lib/reference/select.ts, lib/mask.ts and lib/layout.ts (BlockLayout.fromSelection) over the
// same rounded 16-bit inputs. Two kinds of input:
//   exact   every row of a block is the same small-integer vector and scale is 1/8, so block
//           means, dot products and estimates are exact in float32: the CSR must be identical.
//   random  normal inputs: the CSR must be identical except in rows where the host's ranked
//           estimates at the cut (or the progressive running sum at the goal) are within 1e-4
//           relative, which float32 estimates may order differently; those rows are counted.
// Also: the O(1) tile helpers of select_kernel.cuh against a row-by-row port of lib/mask.ts on
// many geometries, and the parameters the launchers must refuse.
// Prints "PASS <case>" or "FAIL <case>: <why>" per case and "<n> failed"; exits 1 if any failed.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../attention/select.h"
#include "../../attention/select_kernel.cuh"
#include "../../cuda_compat.h"
#include "../../primitives.cuh"
#include "check_util.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

// ---- lib/mask.ts, row by row -------------------------------------------------------------------

struct Spec {
  long long seqQ, seqK;
  bool causal;
  long long left, right, sinks;
};

long long causal_limit_h(const Spec& s, long long i) { return s.causal ? std::min(i + s.seqK - s.seqQ, s.seqK - 1) : s.seqK - 1; }
long long span(long long lo, long long hi) { return hi >= lo ? hi - lo + 1 : 0; }

long long window_sink_count_h(const Spec& s, long long i, long long j0, long long j1) {
  const long long cap = std::min(j1, causal_limit_h(s, i));
  const long long p = i + s.seqK - s.seqQ;
  long long wLo = 0, wHi = -1;
  if (s.left >= 0) {
    wLo = std::max(j0, p - s.left);
    wHi = std::min(cap, p + s.right);
  }
  const long long sLo = j0, sHi = std::min(cap, s.sinks - 1);
  const long long overlap = span(std::max(wLo, sLo), std::min(wHi, sHi));
  return span(wLo, wHi) + span(sLo, sHi) - overlap;
}
long long causal_count_h(const Spec& s, long long i, long long j0, long long j1) { return span(j0, std::min(j1, causal_limit_h(s, i))); }

int tile_coverage_h(const Spec& s, long long i0, long long i1, long long j0, long long j1, bool selected) {
  const long long width = j1 - j0 + 1;
  bool any = false, all = true;
  for (long long i = i0; i <= i1; i++) {
    const long long n = selected ? causal_count_h(s, i, j0, j1) : window_sink_count_h(s, i, j0, j1);
    if (n > 0) any = true;
    if (n < width) all = false;
  }
  return all ? 2 : any ? 1 : 0;
}
bool is_candidate_h(const Spec& s, long long i0, long long i1, long long j0, long long j1) {
  for (long long i = i0; i <= i1; i++)
    if (causal_count_h(s, i, j0, j1) > window_sink_count_h(s, i, j0, j1)) return true;
  return false;
}

// ---- the cases -----------------------------------------------------------------------------------

struct Case {
  std::string name;
  int batch = 1, heads = 1, kvHeads = 1, seqQ = 64, seqK = 64, headDim = 64, blockSize = 64;
  bool bnhd = false, causal = false;
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  SelectMode mode = SelectMode::Ratio;
  double value = 0.5;
  int minBlocks = 0, maxBlocks = INT_MAX;
  bool bound = false, moment = false, share = false;
  bool exact = true;
  int range = 3;  // exact inputs: integers in [-range, range]
  MmaType type = MmaType::F16;
};

struct Layout {
  std::vector<std::int32_t> offsets, indices;
  std::vector<std::uint8_t> flags;
};

struct HostResult {
  Layout layout;
  std::vector<char> fragile;          // per row: the cut is within rounding of another choice
  std::vector<int> keep;              // per row: selected blocks
};

// The float64 reference (lib/reference/select.ts selectBlocks + BlockLayout.fromSelection).
HostResult host_select(const Case& c, const std::vector<double>& q, const std::vector<double>& k, double scale) {
  const int B = c.batch, H = c.heads, Hkv = c.kvHeads, D = c.headDim, bs = c.blockSize;
  const int nQB = (c.seqQ + bs - 1) / bs, nKB = (c.seqK + bs - 1) / bs, group = H / Hkv;
  const Spec spec{c.seqQ, c.seqK, c.causal, c.windowLeft, c.windowRight, c.globalTokens};
  auto at = [&](int nh, int N, int b, int h, int n, int d) { return static_cast<std::size_t>(offset_of(strides_of(c.bnhd, nh, N, D), b, h, n)) + d; };
  struct Summary {
    std::vector<double> mean, mn, mx, var;
    std::vector<int> count;
  };
  auto summarize = [&](const std::vector<double>& x, int b, int h, int nh, int seq, bool bounds, bool variance = false) {
    const int nb = (seq + bs - 1) / bs;
    Summary s;
    s.mean.assign(static_cast<std::size_t>(nb) * D, 0.0);
    if (bounds) {
      s.mn.assign(s.mean.size(), INFINITY);
      s.mx.assign(s.mean.size(), -INFINITY);
    }
    s.count.assign(nb, 0);
    for (int blk = 0; blk < nb; blk++) {
      const int n0 = blk * bs, n1 = std::min(seq, n0 + bs);
      s.count[blk] = n1 - n0;
      for (int n = n0; n < n1; n++)
        for (int d = 0; d < D; d++) {
          const double v = x[at(nh, seq, b, h, n, d)];
          s.mean[blk * D + d] += v;
          if (bounds) {
            s.mn[blk * D + d] = std::min(s.mn[blk * D + d], v);
            s.mx[blk * D + d] = std::max(s.mx[blk * D + d], v);
          }
        }
      for (int d = 0; d < D; d++) s.mean[blk * D + d] /= s.count[blk];
      if (variance) {
        // Two passes, as lib/reference/select.ts summarize.
        s.var.resize(s.mean.size(), 0.0);
        for (int n = n0; n < n1; n++)
          for (int d = 0; d < D; d++) s.var[blk * D + d] += (x[at(nh, seq, b, h, n, d)] - s.mean[blk * D + d]) * (x[at(nh, seq, b, h, n, d)] - s.mean[blk * D + d]);
        for (int d = 0; d < D; d++) s.var[blk * D + d] /= s.count[blk];
      }
    }
    return s;
  };
  std::vector<std::vector<int>> candidates(nQB);
  for (int I = 0; I < nQB; I++) {
    const long long i0 = static_cast<long long>(I) * bs, i1 = std::min<long long>(c.seqQ, i0 + bs) - 1;
    for (int J = 0; J < nKB; J++)
      if (is_candidate_h(spec, i0, i1, static_cast<long long>(J) * bs, std::min<long long>(c.seqK, static_cast<long long>(J) * bs + bs) - 1))
        candidates[I].push_back(J);
  }
  const long long rows = static_cast<long long>(B) * H * nQB;
  HostResult out;
  out.fragile.assign(rows, 0);
  out.keep.assign(rows, 0);
  std::vector<std::vector<int>> chosen(rows);
  const double kTol = 1e-4;

  // rankAndKeep + keepCount; also whether float32 estimates could move the cut.
  auto rank_and_keep = [&](const std::vector<int>& cand, const std::vector<double>& est, const std::vector<int>& counts, bool& fragile) {
    const int cn = static_cast<int>(cand.size());
    std::vector<int> order(cn);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int x, int y) { return est[x] != est[y] ? est[x] > est[y] : cand[x] < cand[y]; });
    double n = 0;
    double mag = 0;
    for (double e : est) mag = std::max(mag, std::fabs(e));
    fragile = false;
    if (c.mode == SelectMode::Ratio) {
      const double x = c.value * cn;
      n = std::ceil(x - 1e-9 * std::fabs(x));
    } else if (c.mode == SelectMode::TopBlocks) {
      n = c.value;
    } else {
      std::vector<double> w(cn);
      if (cn) {
        const double top = est[order[0]];
        for (int r = 0; r < cn; r++) w[r] = counts[cand[order[r]]] * std::exp(est[order[r]] - top);
      }
      double total = 0;
      for (int r = 0; r < cn; r++) total += w[r];
      const double goal = c.value * total;
      double acc = 0;
      int m = 0;
      while (m < cn && acc < goal) acc += w[m++];
      n = m;
      double run = 0;
      for (int r = 0; r < cn; r++) {
        run += w[r];
        if (std::fabs(run - goal) <= kTol * total) fragile = true;
      }
    }
    const int kept = static_cast<int>(std::min<double>(cn, std::max<double>(c.minBlocks, std::min<double>(c.maxBlocks, n))));
    if (kept > 0 && kept < cn && std::fabs(est[order[kept - 1]] - est[order[kept]]) <= kTol * std::max(mag, 1e-30)) fragile = true;
    std::vector<int> pick;
    for (int r = 0; r < kept; r++) pick.push_back(cand[order[r]]);
    std::sort(pick.begin(), pick.end());
    return pick;
  };

  if (c.mode != SelectMode::None) {
    for (int b = 0; b < B; b++)
      for (int hk = 0; hk < Hkv; hk++) {
        const Summary ks = summarize(k, b, hk, Hkv, c.seqK, c.bound, c.moment);
        std::vector<Summary> qs;
        for (int g = 0; g < group; g++) qs.push_back(summarize(q, b, hk * group + g, H, c.seqQ, false));
        for (int I = 0; I < nQB; I++) {
          const std::vector<int>& cand = candidates[I];
          std::vector<std::vector<double>> est(group, std::vector<double>(cand.size()));
          for (int g = 0; g < group; g++)
            for (std::size_t ci = 0; ci < cand.size(); ci++) {
              const int J = cand[ci];
              double e = 0, v = 0;
              for (int d = 0; d < D; d++) {
                const double qm = qs[g].mean[I * D + d];
                if (!c.bound) {
                  e += qm * ks.mean[J * D + d];
                  if (c.moment) v += qm * qm * ks.var[J * D + d];
                } else {
                  const double a = qm * ks.mn[J * D + d], cc = qm * ks.mx[J * D + d];
                  e += a > cc ? a : cc;
                }
              }
              est[g][ci] = scale * e + (c.moment ? ((scale * scale) / 2) * v : 0);
            }
          auto row = [&](int g) { return (static_cast<long long>(b) * H + hk * group + g) * nQB + I; };
          if (c.share) {
            std::vector<double> shared(cand.size());
            for (std::size_t ci = 0; ci < cand.size(); ci++) {
              double acc = 0;
              for (int g = 0; g < group; g++) acc += est[g][ci];
              shared[ci] = acc / group;
            }
            bool fr = false;
            const std::vector<int> pick = rank_and_keep(cand, shared, ks.count, fr);
            for (int g = 0; g < group; g++) {
              chosen[row(g)] = pick;
              out.fragile[row(g)] = fr;
              out.keep[row(g)] = static_cast<int>(pick.size());
            }
          } else {
            for (int g = 0; g < group; g++) {
              bool fr = false;
              chosen[row(g)] = rank_and_keep(cand, est[g], ks.count, fr);
              out.fragile[row(g)] = fr;
              out.keep[row(g)] = static_cast<int>(chosen[row(g)].size());
            }
          }
        }
      }
  }

  // BlockLayout.fromSelection.
  Layout& L = out.layout;
  L.offsets.assign(rows + 1, 0);
  for (long long r = 0; r < rows; r++) {
    const int I = static_cast<int>(r % nQB);
    const long long i0 = static_cast<long long>(I) * bs, i1 = std::min<long long>(c.seqQ, i0 + bs) - 1;
    std::vector<char> isChosen(nKB, 0);
    for (int J : chosen[r]) isChosen[J] = 1;
    for (int J = 0; J < nKB; J++) {
      const long long j0 = static_cast<long long>(J) * bs, j1 = std::min<long long>(c.seqK, j0 + bs) - 1;
      const int cov = tile_coverage_h(spec, i0, i1, j0, j1, isChosen[J]);
      if (cov == 0) continue;
      L.indices.push_back(J);
      L.flags.push_back(static_cast<std::uint8_t>((isChosen[J] ? kBlockSelected : 0) | (cov == 2 ? kBlockFull : 0)));
    }
    L.offsets[r + 1] = static_cast<std::int32_t>(L.indices.size());
  }
  return out;
}

void run_case(const Case& c, std::uint32_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  const int B = c.batch, H = c.heads, Hkv = c.kvHeads, Nq = c.seqQ, Nk = c.seqK, D = c.headDim, bs = c.blockSize;
  const double scale = c.exact ? 0.125 : static_cast<double>(static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-c.range, c.range);
  auto at = [&](int nh, int N, int b, int h, int n, int d) { return static_cast<std::size_t>(offset_of(strides_of(c.bnhd, nh, N, D), b, h, n)) + d; };
  auto make = [&](int nh, int N, std::vector<std::uint16_t>& bits, std::vector<double>& vals) {
    const std::size_t total = static_cast<std::size_t>(B) * nh * N * D;
    bits.assign(total, 0);
    vals.assign(total, 0.0);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < nh; h++)
        for (int blk = 0; blk * bs < N; blk++) {
          std::vector<float> row(D);
          for (int d = 0; d < D; d++) row[d] = static_cast<float>(small(rng));
          for (int n = blk * bs; n < std::min(N, blk * bs + bs); n++)
            for (int d = 0; d < D; d++) {
              const float x = c.exact ? row[d] : normal(rng);
              const std::size_t i = at(nh, N, b, h, n, d);
              bits[i] = encode(x, c.type);
              vals[i] = twin::to_float(bits[i], c.type);
            }
        }
  };
  std::vector<std::uint16_t> qb, kb;
  std::vector<double> qv, kv;
  make(H, Nq, qb, qv);
  make(Hkv, Nk, kb, kv);
  const HostResult want = host_select(c, qv, kv, scale);

  SelectParams p;
  DeviceArray<std::uint16_t> dq(qb.size()), dk(kb.size());
  dq.put(qb);
  dk.put(kb);
  p.q = dq.ptr;
  p.k = dk.ptr;
  p.qStrides = strides_of(c.bnhd, H, Nq, D);
  p.kStrides = strides_of(c.bnhd, Hkv, Nk, D);
  p.shape = Shape{B, H, Hkv, Nq, Nk, D};
  p.scale = static_cast<float>(scale);
  p.mask = MaskSpec{c.causal, c.windowLeft, c.windowRight, c.globalTokens};
  p.blockSize = bs;
  p.mode = c.mode;
  p.value = c.value;
  p.minBlocks = c.minBlocks;
  p.maxBlocks = c.maxBlocks;
  p.boundEstimate = c.bound;
  p.momentEstimate = c.moment;
  p.shareAcrossGroup = c.share;

  const long long rows = static_cast<long long>(B) * H * ((Nq + bs - 1) / bs);
  DeviceArray<unsigned char> ws(select_workspace_bytes(p));
  ws.poison();
  DeviceArray<std::int32_t> doff(rows + 1);
  doff.poison();
  cudaError_t err = select_blocks_count(p, c.type, ws.ptr, doff.ptr, nullptr);
  if (err != cudaSuccess) return report(c.name, false, std::string("count: ") + cudaGetErrorName(err));
  const std::vector<std::int32_t> off = doff.get();
  if (off[0] != 0) return report(c.name, false, "offsets[0] = " + std::to_string(off[0]));
  for (long long r = 0; r < rows; r++)
    if (off[r + 1] < off[r]) return report(c.name, false, "offsets decrease at row " + std::to_string(r));
  const std::size_t total = static_cast<std::size_t>(off[rows]);
  DeviceArray<std::int32_t> didx(total);
  DeviceArray<std::uint8_t> dfl(total);
  didx.poison();
  dfl.poison();
  err = select_blocks_fill(p, ws.ptr, doff.ptr, didx.ptr, dfl.ptr, nullptr);
  if (err != cudaSuccess) return report(c.name, false, std::string("fill: ") + cudaGetErrorName(err));
  const std::vector<std::int32_t> idx = didx.get();
  const std::vector<std::uint8_t> fl = dfl.get();

  // Every device entry must be a consistent tile (verifyLayout); rows must equal the host's
  // unless excused (random inputs only).
  const Spec spec{Nq, Nk, c.causal, c.windowLeft, c.windowRight, c.globalTokens};
  const int nQB = (Nq + bs - 1) / bs, nKB = (Nk + bs - 1) / bs;
  int excused = 0, fragileRows = 0, selected = 0;
  std::string why;
  for (long long r = 0; r < rows && why.empty(); r++) {
    const int I = static_cast<int>(r % nQB);
    const long long i0 = static_cast<long long>(I) * bs, i1 = std::min<long long>(Nq, i0 + bs) - 1;
    int sel = 0;
    for (int e = off[r]; e < off[r + 1]; e++) {
      const int J = idx[e];
      if (J < 0 || J >= nKB || (e > off[r] && J <= idx[e - 1]) || (fl[e] & ~3)) {
        why = "row " + std::to_string(r) + " entry " + std::to_string(e) + " out of range or order";
        break;
      }
      const long long j0 = static_cast<long long>(J) * bs, j1 = std::min<long long>(Nk, j0 + bs) - 1;
      const int cov = tile_coverage_h(spec, i0, i1, j0, j1, fl[e] & kBlockSelected);
      if (cov == 0 || (cov == 2) != ((fl[e] & kBlockFull) != 0)) {
        why = "row " + std::to_string(r) + " key block " + std::to_string(J) + " has a wrong coverage flag";
        break;
      }
      sel += (fl[e] & kBlockSelected) ? 1 : 0;
    }
    if (!why.empty()) break;
    selected += sel;
    fragileRows += want.fragile[r];
    const Layout& w = want.layout;
    bool same = off[r + 1] - off[r] == w.offsets[r + 1] - w.offsets[r];
    for (int e = 0; same && e < off[r + 1] - off[r]; e++)
      same = idx[off[r] + e] == w.indices[w.offsets[r] + e] && fl[off[r] + e] == w.flags[w.offsets[r] + e];
    if (same) continue;
    const bool countFixed = c.mode == SelectMode::Ratio || c.mode == SelectMode::TopBlocks;
    if (!c.exact && want.fragile[r] && (!countFixed || sel == want.keep[r])) {
      excused++;
      continue;
    }
    std::string dev, host;
    for (int e = off[r]; e < off[r + 1]; e++) dev += " " + std::to_string(idx[e]) + "/" + std::to_string(fl[e]);
    for (int e = w.offsets[r]; e < w.offsets[r + 1]; e++) host += " " + std::to_string(w.indices[e]) + "/" + std::to_string(w.flags[e]);
    why = "row " + std::to_string(r) + " differs: device" + dev + " | host" + host;
  }
  // At most a few percent of rows (and never more than 2) may be excused.
  if (why.empty() && excused > std::max<long long>(2, rows / 20)) why = std::to_string(excused) + " of " + std::to_string(rows) + " rows excused";
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char info[160];
  std::snprintf(info, sizeof info, " (rows %lld, entries %zu, selected %d, near-ties %d, excused %d, %.0f ms)", rows, total, selected, fragileRows,
                excused, ms);
  report(c.name + info, why.empty(), why);
}

// The O(1) helpers against the row-by-row port on random geometries.
void check_mask_helpers() {
  std::mt19937 rng(7);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  long long tiles = 0;
  std::string why;
  for (int trial = 0; trial < 4000 && why.empty(); trial++) {
    Spec s;
    s.seqQ = uni(1, 160);
    s.seqK = uni(1, 160);
    s.causal = uni(0, 1);
    const int kind = uni(0, 2);
    s.left = kind == 0 ? -1 : uni(0, 40);
    s.right = kind == 0 ? -1 : (kind == 1 && s.causal ? 0 : uni(0, 40));
    s.sinks = uni(0, 3) == 0 ? 0 : uni(0, 50);
    const int bs = 16 * uni(1, 3);
    blocksel::MaskGeometry m;
    m.seqQ = s.seqQ;
    m.seqK = s.seqK;
    m.causal = s.causal;
    m.left = s.left;
    m.right = s.right;
    m.sinks = s.sinks;
    for (long long i0 = 0; i0 < s.seqQ && why.empty(); i0 += bs)
      for (long long j0 = 0; j0 < s.seqK; j0 += bs) {
        const long long i1 = std::min(s.seqQ, i0 + bs) - 1, j1 = std::min(s.seqK, j0 + bs) - 1;
        tiles++;
        const int c0 = tile_coverage_h(s, i0, i1, j0, j1, true), c1 = tile_coverage_h(s, i0, i1, j0, j1, false);
        const bool cand = is_candidate_h(s, i0, i1, j0, j1);
        if (blocksel::causal_coverage(m, i0, i1, j0, j1) != c0 || blocksel::window_sink_coverage(m, i0, i1, j0, j1) != c1 ||
            blocksel::is_candidate(m, i0, i1, j0, j1) != cand) {
          char buf[256];
          std::snprintf(buf, sizeof buf, "Nq %lld Nk %lld causal %d window [%lld,%lld] sinks %lld tile [%lld,%lld]x[%lld,%lld]: want %d %d %d", s.seqQ,
                        s.seqK, s.causal, s.left, s.right, s.sinks, i0, i1, j0, j1, c0, c1, cand);
          why = buf;
          break;
        }
      }
  }
  report("tile helpers equal lib/mask.ts row by row (" + std::to_string(tiles) + " tiles)", why.empty(), why);
}

void check_refusals() {
  SelectParams base;
  std::vector<std::uint16_t> one(64, 0);
  DeviceArray<std::uint16_t> d(one.size());
  d.put(one);
  base.q = base.k = d.ptr;
  base.shape = Shape{1, 1, 1, 64, 64, 1};
  base.qStrides.row = base.kStrides.row = 1;
  base.scale = 1;
  base.blockSize = 16;
  base.mode = SelectMode::Ratio;
  base.value = 0.5;
  DeviceArray<std::int32_t> off(8);
  DeviceArray<unsigned char> ws(1 << 16);
  struct Bad {
    const char* name;
    void (*edit)(SelectParams&);
  };
  const Bad bad[] = {
      {"blockSize 24", [](SelectParams& p) { p.blockSize = 24; }},
      {"blockSize 272", [](SelectParams& p) { p.blockSize = 272; }},
      {"headDim 0", [](SelectParams& p) { p.shape.headDim = 0; }},
      {"headDim 257", [](SelectParams& p) { p.shape.headDim = 257; }},
      {"heads 3 kvHeads 2", [](SelectParams& p) { p.shape.heads = 3; p.shape.kvHeads = 2; }},
      {"window [-1, 3]", [](SelectParams& p) { p.mask.windowLeft = -1; p.mask.windowRight = 3; }},
      {"negative sinks", [](SelectParams& p) { p.mask.globalTokens = -1; }},
      {"mode 7", [](SelectParams& p) { p.mode = static_cast<SelectMode>(7); }},
      {"value NaN", [](SelectParams& p) { p.value = NAN; }},
      {"minBlocks -1", [](SelectParams& p) { p.minBlocks = -1; }},
      {"4097 key blocks", [](SelectParams& p) { p.shape.seqK = 4097 * 16; }},
  };
  std::string why;
  for (const Bad& b : bad) {
    SelectParams p = base;
    b.edit(p);
    if (select_blocks_count(p, MmaType::F16, ws.ptr, off.ptr, nullptr) != cudaErrorInvalidValue) why += std::string(" ") + b.name;
  }
  if (select_blocks_count(base, MmaType::F16, ws.ptr, nullptr, nullptr) != cudaErrorInvalidValue) why += " null offsets";
  if (select_blocks_count(base, MmaType::F16, nullptr, off.ptr, nullptr) != cudaErrorInvalidValue) why += " null workspace";
  SelectParams most = base;
  most.shape.seqK = 4096 * 16;
  if (select_workspace_bytes(most) == 0) why += " 4096 key blocks refused";
  SelectParams none = base;
  none.mode = SelectMode::None;
  none.shape.headDim = 0;
  if (select_workspace_bytes(none) != 0 || select_blocks_count(none, MmaType::F16, nullptr, off.ptr, nullptr) != cudaSuccess) why += " mode None";
  cudaGetLastError();
  report("unsupported parameters are refused", why.empty(), "accepted:" + why);
}

}  // namespace

// --quick (the sanitizer builds, where each CUDA thread is an OS thread and a 256-thread CTA
// takes about a second): every third case of at most 40000 (query, key) pairs.
int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const auto t0 = std::chrono::steady_clock::now();
  check_mask_helpers();
  check_refusals();

  const MmaType F16 = MmaType::F16, BF16 = MmaType::BF16;
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(c); };
  Case c;

  // Ratio, count, progressive; exact inputs, causal and not, odd lengths, block sizes.
  c = Case{};
  c.name = "ratio 0.3 causal N 200 bs 16 d 64";
  c.heads = c.kvHeads = 2; c.seqQ = c.seqK = 200; c.blockSize = 16; c.causal = true; c.value = 0.3;
  add(c);
  c = Case{};
  c.name = "ratio 0.5 non-causal N 300 bs 64 d 59 bnhd bf16";
  c.seqQ = c.seqK = 300; c.headDim = 59; c.bnhd = true; c.type = BF16;
  add(c);
  c = Case{};
  c.name = "topBlocks 3 causal window 32 sinks 4 bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.causal = true; c.windowLeft = 31; c.windowRight = 0; c.globalTokens = 4;
  c.mode = SelectMode::TopBlocks; c.value = 3;
  add(c);
  c = Case{};
  c.name = "topBlocks 50 (above candidates) non-causal bs 16";
  c.seqQ = 97; c.seqK = 200; c.blockSize = 16; c.mode = SelectMode::TopBlocks; c.value = 50;
  add(c);
  c = Case{};
  c.name = "progressive 0.9 causal N 300 bs 16 d 128 bf16";
  c.seqQ = c.seqK = 300; c.blockSize = 16; c.headDim = 128; c.causal = true; c.mode = SelectMode::Progressive; c.value = 0.9; c.type = BF16;
  add(c);
  c = Case{};
  c.name = "progressive 0.5 min 2 max 4 causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 32; c.causal = true; c.mode = SelectMode::Progressive; c.value = 0.5;
  c.minBlocks = 2; c.maxBlocks = 4;
  add(c);
  c = Case{};
  c.name = "progressive 1.0 non-causal sinks 20 bs 32";
  c.seqQ = 97; c.seqK = 300; c.blockSize = 32; c.headDim = 16; c.globalTokens = 20; c.mode = SelectMode::Progressive; c.value = 1.0;
  add(c);
  c = Case{};
  c.name = "progressive 0 with minBlocks 1 causal bs 16";
  c.seqQ = c.seqK = 130; c.blockSize = 16; c.headDim = 8; c.causal = true; c.mode = SelectMode::Progressive; c.value = 0; c.minBlocks = 1;
  add(c);
  c = Case{};
  c.name = "ratio 0.2 minBlocks 3 causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 8; c.causal = true; c.value = 0.2; c.minBlocks = 3;
  add(c);
  c = Case{};
  c.name = "ratio 0.9 maxBlocks 2 non-causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 8; c.value = 0.9; c.maxBlocks = 2;
  add(c);
  c = Case{};
  c.name = "ratio 1/3 (ceil tolerance) causal bs 16";
  c.seqQ = c.seqK = 300; c.blockSize = 16; c.headDim = 8; c.causal = true; c.value = 1.0 / 3.0;
  add(c);
  // Estimates: bound, shared across a group (GQA 4:1 and 4:2).
  c = Case{};
  c.name = "bound ratio 0.25 causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 32; c.causal = true; c.value = 0.25; c.bound = true;
  add(c);
  c = Case{};
  c.name = "bound progressive 0.8 non-causal bs 64 bf16";
  c.seqQ = c.seqK = 300; c.headDim = 64; c.bound = true; c.mode = SelectMode::Progressive; c.value = 0.8; c.type = BF16;
  add(c);
  c = Case{};
  c.name = "moment ratio 0.25 causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 16; c.causal = true; c.value = 0.25; c.moment = true;
  add(c);
  c = Case{};
  c.name = "moment progressive 0.9 GQA 4:2 shared bs 64";
  c.heads = 4; c.kvHeads = 2; c.seqQ = c.seqK = 300; c.headDim = 64; c.moment = true; c.mode = SelectMode::Progressive; c.value = 0.9; c.share = true;
  add(c);
  c = Case{};
  c.name = "GQA 4:1 shared ratio 0.3 causal bs 16";
  c.heads = 4; c.kvHeads = 1; c.seqQ = c.seqK = 150; c.blockSize = 16; c.headDim = 16; c.causal = true; c.value = 0.3; c.share = true;
  add(c);
  c = Case{};
  c.name = "GQA 4:2 shared progressive 0.7 bnhd bs 16";
  c.heads = 4; c.kvHeads = 2; c.seqQ = c.seqK = 150; c.blockSize = 16; c.headDim = 16; c.causal = true; c.mode = SelectMode::Progressive;
  c.value = 0.7; c.share = true; c.bnhd = true;
  add(c);
  c = Case{};
  c.name = "GQA 4:2 per head topBlocks 2 bs 16";
  c.heads = 4; c.kvHeads = 2; c.seqQ = c.seqK = 150; c.blockSize = 16; c.headDim = 16; c.mode = SelectMode::TopBlocks; c.value = 2;
  add(c);
  // Nq != Nk (bottom-right aligned), windows, sinks, mode None.
  c = Case{};
  c.name = "decode Nq 1 Nk 300 causal bs 16";
  c.seqQ = 1; c.seqK = 300; c.blockSize = 16; c.headDim = 64; c.causal = true; c.value = 0.25;
  add(c);
  c = Case{};
  c.name = "Nq 97 Nk 300 causal window 40 sinks 8 bs 16 progressive";
  c.seqQ = 97; c.seqK = 300; c.blockSize = 16; c.headDim = 24; c.causal = true; c.windowLeft = 39; c.windowRight = 0; c.globalTokens = 8;
  c.mode = SelectMode::Progressive; c.value = 0.6;
  add(c);
  c = Case{};
  c.name = "Nq 300 Nk 97 causal (rows without candidates) bs 16";
  c.seqQ = 300; c.seqK = 97; c.blockSize = 16; c.headDim = 16; c.causal = true; c.value = 0.5;
  add(c);
  c = Case{};
  c.name = "window [20, 10] sinks 8 non-causal ratio bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 16; c.windowLeft = 20; c.windowRight = 10; c.globalTokens = 8; c.value = 0.4;
  add(c);
  c = Case{};
  c.name = "window [30, 30] causal topBlocks 1 bs 16";
  c.seqQ = 200; c.seqK = 250; c.blockSize = 16; c.headDim = 16; c.causal = true; c.windowLeft = 30; c.windowRight = 30;
  c.mode = SelectMode::TopBlocks; c.value = 1;
  add(c);
  c = Case{};
  c.name = "mode None window 48 sinks 4 causal bs 16";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 16; c.causal = true; c.windowLeft = 47; c.windowRight = 0; c.globalTokens = 4;
  c.mode = SelectMode::None;
  add(c);
  c = Case{};
  c.name = "mode None window [16, 40] non-causal Nq 300 Nk 97";
  c.seqQ = 300; c.seqK = 97; c.blockSize = 16; c.headDim = 16; c.windowLeft = 16; c.windowRight = 40; c.mode = SelectMode::None;
  add(c);
  c = Case{};
  c.name = "sinks cover everything (no candidates) causal";
  c.seqQ = c.seqK = 97; c.blockSize = 16; c.headDim = 4; c.causal = true; c.globalTokens = 200; c.value = 1;
  add(c);
  c = Case{};
  c.name = "progressive 0.8 small spread causal bs 16 d 4";
  c.heads = c.kvHeads = 2; c.seqQ = c.seqK = 300; c.blockSize = 16; c.headDim = 4; c.range = 1; c.causal = true;
  c.mode = SelectMode::Progressive; c.value = 0.8;
  add(c);
  c = Case{};
  c.name = "progressive 0.6 small spread shared GQA 4:1 non-causal bs 32 d 2";
  c.heads = 4; c.seqQ = 97; c.seqK = 300; c.blockSize = 32; c.headDim = 2; c.range = 1; c.share = true;
  c.mode = SelectMode::Progressive; c.value = 0.6;
  add(c);
  // Many key blocks: several compaction chunks, long sorts, the largest sort (4096 blocks, 64 KiB
  // of shared memory with the progressive weights).
  c = Case{};
  c.name = "600 key blocks Nq 40 non-causal ratio 0.1 bs 16 sinks 100";
  c.seqQ = 40; c.seqK = 9600; c.blockSize = 16; c.headDim = 2; c.globalTokens = 100; c.value = 0.1;
  add(c);
  c = Case{};
  c.name = "4096 key blocks decode causal progressive 0.5 bs 16";
  c.seqQ = 1; c.seqK = 65536; c.blockSize = 16; c.headDim = 1; c.range = 2; c.causal = true; c.mode = SelectMode::Progressive; c.value = 0.5;
  add(c);
  c = Case{};
  c.name = "4096 key blocks Nq 16 window [64, 64] topBlocks 100 bs 16";
  c.seqQ = 16; c.seqK = 65536; c.blockSize = 16; c.headDim = 1; c.windowLeft = 64; c.windowRight = 64;
  c.mode = SelectMode::TopBlocks; c.value = 100;
  add(c);
  // Sizes: block 128, head dims 1 and 256, batch 2, length 1.
  c = Case{};
  c.name = "bs 128 N 300 causal ratio 0.5 d 256";
  c.seqQ = c.seqK = 300; c.blockSize = 128; c.headDim = 256; c.causal = true;
  add(c);
  c = Case{};
  c.name = "d 1 bs 16 causal progressive 0.95";
  c.seqQ = c.seqK = 200; c.blockSize = 16; c.headDim = 1; c.causal = true; c.mode = SelectMode::Progressive; c.value = 0.95;
  add(c);
  c = Case{};
  c.name = "batch 2 heads 2 bnhd causal ratio 0.4 bs 32";
  c.batch = 2; c.heads = c.kvHeads = 2; c.seqQ = c.seqK = 200; c.blockSize = 32; c.headDim = 16; c.causal = true; c.bnhd = true; c.value = 0.4;
  add(c);
  c = Case{};
  c.name = "N 1 causal ratio 1";
  c.seqQ = c.seqK = 1; c.blockSize = 16; c.headDim = 4; c.causal = true; c.value = 1;
  add(c);
  c = Case{};
  c.name = "seqK 0 window";
  c.seqQ = 20; c.seqK = 0; c.blockSize = 16; c.headDim = 4; c.windowLeft = 3; c.windowRight = 3;
  add(c);

  // Random inputs (estimates rounded in float32): equal up to rows with near-ties at the cut.
  const std::size_t exactCases = cases.size();
  for (std::size_t i = 0; i < exactCases; i++) {
    const std::string n = cases[i].name;
    const bool pick = n.rfind("ratio 0.3", 0) == 0 || n.rfind("progressive 0.9", 0) == 0 || n.rfind("bound", 0) == 0 || n.rfind("moment", 0) == 0 || n.rfind("GQA", 0) == 0 ||
                      n.rfind("Nq 97", 0) == 0 || n.rfind("window [20", 0) == 0 || n.rfind("bs 128", 0) == 0 || n.rfind("batch 2", 0) == 0 ||
                      n.rfind("topBlocks 3", 0) == 0 || n.rfind("d 1 ", 0) == 0 || n.rfind("progressive 0.5", 0) == 0 || n.rfind("600 key", 0) == 0 || n.rfind("4096 key blocks decode", 0) == 0;
    if (!pick) continue;
    Case r = cases[i];
    r.exact = false;
    r.name = "random " + n;
    r.type = r.type == F16 ? BF16 : F16;
    cases.push_back(r);
  }

  std::uint32_t seed = 1;
  if (quick) {
    std::erase_if(cases, [](const Case& cs) { return static_cast<long long>(cs.seqQ) * cs.seqK * cs.batch * cs.heads > 40000; });
    std::vector<Case> every3;
    for (std::size_t i = 0; i < cases.size(); i += 3) every3.push_back(cases[i]);
    cases = every3;
  }
  for (const Case& cs : cases) run_case(cs, seed++);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d failed (%zu cases, %.1f s)\n", failures, cases.size() + 2, s);
  return failures ? 1 : 0;
}
