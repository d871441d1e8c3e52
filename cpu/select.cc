// Compiled with -ffp-contract=off (cmake/cpu.cmake): a fused multiply-add would round the
// estimates differently from the reference and flip near-tied rankings.
#include "select.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "layout.h"
#include "mask.h"
#include "thread_pool.h"

namespace psa::cpu {
namespace {

// Per block of one head: the mean of its rows, for 'bound' the per-channel min and max, for
// 'moment' the per-channel population variance.
struct BlockSummary {
  std::vector<double> mean, min, max, variance;  // [blocks][D]
  std::vector<int> count;                        // rows per block
};

BlockSummary summarize(const Problem& p, int bs, const float* x, int b, int h, int heads, int seq, Estimate need) {
  const bool bounds = need == Estimate::Bound;
  const int D = p.headDim;
  const int nb = (seq + bs - 1) / bs;
  BlockSummary s;
  s.mean.assign(static_cast<std::size_t>(nb) * D, 0.0);
  if (bounds) {
    s.min.assign(s.mean.size(), INFINITY);
    s.max.assign(s.mean.size(), -INFINITY);
  }
  if (need == Estimate::Moment) s.variance.assign(s.mean.size(), 0.0);
  s.count.resize(nb);
  for (int B = 0; B < nb; B++) {
    const int n0 = B * bs;
    const int n1 = std::min(seq, n0 + bs);
    s.count[B] = n1 - n0;
    double* mean = s.mean.data() + static_cast<std::size_t>(B) * D;
    for (int n = n0; n < n1; n++) {
      const float* row = x + p.rowBase(b, h, heads, seq, n);
      for (int d = 0; d < D; d++) {
        mean[d] += row[d];
        if (bounds) {
          double& lo = s.min[static_cast<std::size_t>(B) * D + d];
          double& hi = s.max[static_cast<std::size_t>(B) * D + d];
          if (row[d] < lo) lo = row[d];
          if (row[d] > hi) hi = row[d];
        }
      }
    }
    for (int d = 0; d < D; d++) mean[d] /= s.count[B];
    if (need == Estimate::Moment) {
      // Two passes (mean, then squared deviations), as the reference: no cancellation.
      double* var = s.variance.data() + static_cast<std::size_t>(B) * D;
      for (int n = n0; n < n1; n++) {
        const float* row = x + p.rowBase(b, h, heads, seq, n);
        for (int d = 0; d < D; d++) {
          const double dev = row[d] - mean[d];
          var[d] += dev * dev;
        }
      }
      for (int d = 0; d < D; d++) var[d] /= s.count[B];
    }
  }
  return s;
}

// e(I, J) for W key blocks J[0..W) at once: 'mean' scale q̄·k̄; 'bound' scale Σ_d max(q̄_d min_d,
// q̄_d max_d); 'moment' scale q̄·k̄ + scale²/2 Σ_d q̄_d² var_d. Each sum runs over d in the
// reference's order in an accumulator of its own, so W dependency chains overlap and every
// value is the reference's, bit for bit.
template <int W>
void estimateBlocks(const Problem& p, const double* qm, const BlockSummary& ks, const int* J, Estimate kind, double* out) {
  const int D = p.headDim;
  std::size_t ko[W];
  for (int w = 0; w < W; w++) ko[w] = static_cast<std::size_t>(J[w]) * D;
  double e[W] = {};
  if (kind == Estimate::Bound) {
    for (int d = 0; d < D; d++) {
      for (int w = 0; w < W; w++) {
        const double a = qm[d] * ks.min[ko[w] + d];
        const double c = qm[d] * ks.max[ko[w] + d];
        e[w] += a > c ? a : c;
      }
    }
    for (int w = 0; w < W; w++) out[w] = p.scale * e[w];
    return;
  }
  for (int d = 0; d < D; d++) {
    for (int w = 0; w < W; w++) e[w] += qm[d] * ks.mean[ko[w] + d];
  }
  if (kind == Estimate::Mean) {
    for (int w = 0; w < W; w++) out[w] = p.scale * e[w];
    return;
  }
  double v[W] = {};
  for (int d = 0; d < D; d++) {
    for (int w = 0; w < W; w++) v[w] += qm[d] * qm[d] * ks.variance[ko[w] + d];
  }
  for (int w = 0; w < W; w++) out[w] = p.scale * e[w] + ((p.scale * p.scale) / 2) * v[w];
}

// e(I, J) of every candidate J of query block I, four at a time.
void estimates(const Problem& p, const BlockSummary& qs, int I, const BlockSummary& ks, const std::vector<int>& cand, Estimate kind, std::vector<double>& out) {
  constexpr int kWays = 4;
  const double* qm = qs.mean.data() + static_cast<std::size_t>(I) * p.headDim;
  out.resize(cand.size());
  std::size_t c = 0;
  for (; c + kWays <= cand.size(); c += kWays) estimateBlocks<kWays>(p, qm, ks, cand.data() + c, kind, out.data() + c);
  for (; c < cand.size(); c++) estimateBlocks<1>(p, qm, ks, cand.data() + c, kind, out.data() + c);
}

// How many of `c` ranked candidates to keep; `weights` in ranked order (progressive only).
int keepCount(const Selection& sel, int c, const std::vector<double>& weights) {
  long long n;
  if (sel.mode == SelectionMode::Ratio) {
    n = ceilTolerant(sel.value * c);
  } else if (sel.mode == SelectionMode::TopBlocks) {
    n = static_cast<long long>(sel.value);
  } else {
    double total = 0;
    for (int r = 0; r < c; r++) total += weights[r];
    const double goal = sel.value * total;
    double acc = 0;
    n = 0;
    while (n < c && acc < goal) acc += weights[n++];
  }
  return static_cast<int>(std::min<long long>(c, std::max<long long>(sel.minBlocks, std::min<long long>(sel.maxBlocks, n))));
}

// Rank candidates by estimate (ties to the lower block index) and mark the kept prefix in `pick`.
void rankAndKeep(const Selection& sel, const std::vector<int>& cand, const std::vector<double>& est, const std::vector<int>& counts,
                 std::uint8_t* pick) {
  std::vector<int> order(cand.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return est[x] != est[y] ? est[x] > est[y] : cand[x] < cand[y]; });
  std::vector<double> weights;
  if (sel.mode == SelectionMode::Progressive && !order.empty()) {
    const double top = est[order[0]];
    for (int c : order) weights.push_back(counts[cand[c]] * std::exp(est[c] - top));
  }
  const int n = keepCount(sel, static_cast<int>(cand.size()), weights);
  for (int r = 0; r < n; r++) pick[cand[order[r]]] = 1;
}

}  // namespace

BlockLayout selectBlocks(const Problem& p, int bs, int qbs, const Selection& sel, const float* q, const float* k, int threads) {
  const int nQB = p.numQueryBlocks(qbs);
  const int nKB = p.numKeyBlocks(bs);
  const int group = p.heads / p.kvHeads;
  std::vector<std::vector<int>> candidates(nQB);
  for (int I = 0; I < nQB; I++) {
    const int i1 = std::min(p.seqQ, I * qbs + qbs) - 1;
    for (int J = 0; J < nKB; J++) {
      if (isCandidate(p.mask, I * qbs, i1, J * bs, std::min(p.seqK, J * bs + bs) - 1)) candidates[I].push_back(J);
    }
  }
  // chosen[((b * heads + h) * nQB + I) * nKB + J]
  std::vector<std::uint8_t> chosen(static_cast<std::size_t>(p.batch) * p.heads * nQB * nKB, 0);
  ThreadPool::shared().run(threads, static_cast<std::int64_t>(p.batch) * p.kvHeads, [&](std::int64_t item, int) {
    const int b = static_cast<int>(item) / p.kvHeads;
    const int hk = static_cast<int>(item) % p.kvHeads;
    const BlockSummary ks = summarize(p, bs, k, b, hk, p.kvHeads, p.seqK, sel.estimate);
    std::vector<BlockSummary> qs;
    for (int g = 0; g < group; g++) qs.push_back(summarize(p, qbs, q, b, hk * group + g, p.heads, p.seqQ, Estimate::Mean));
    std::vector<std::vector<double>> est(group);
    for (int I = 0; I < nQB; I++) {
      const std::vector<int>& cand = candidates[I];
      for (int g = 0; g < group; g++) estimates(p, qs[g], I, ks, cand, sel.estimate, est[g]);
      auto pickOf = [&](int g) { return chosen.data() + ((static_cast<std::size_t>(b) * p.heads + hk * group + g) * nQB + I) * nKB; };
      if (sel.shareAcrossGroup) {
        std::vector<double> shared(cand.size());
        for (std::size_t c = 0; c < cand.size(); c++) {
          double acc = 0;
          for (int g = 0; g < group; g++) acc += est[g][c];
          shared[c] = acc / group;
        }
        rankAndKeep(sel, cand, shared, ks.count, pickOf(0));
        for (int g = 1; g < group; g++) std::copy(pickOf(0), pickOf(0) + nKB, pickOf(g));
      } else {
        for (int g = 0; g < group; g++) rankAndKeep(sel, cand, est[g], ks.count, pickOf(g));
      }
    }
  });
  return layoutFromChoice(p, bs, qbs, [&](int b, int h, int I) { return chosen.data() + ((static_cast<std::size_t>(b) * p.heads + h) * nQB + I) * nKB; });
}

}  // namespace psa::cpu
