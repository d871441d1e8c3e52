// The port of lib/reference/decode.ts (see decode.h). Names follow the reference so the two
// read side by side: candidates, estimates, choosePages, progressiveCount.
#include "decode.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numeric>

#include "mask.h"
#include "thread_pool.h"

namespace psa::cpu {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double logSumExp(const std::vector<double>& xs) {
  double m = kNegInf;
  for (double x : xs) m = std::max(m, x);
  if (m == kNegInf) return kNegInf;
  double sum = 0;
  for (double x : xs) sum += std::exp(x - m);
  return m + std::log(sum);
}

double logAddExp(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = std::max(a, b);
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}

long long spanOf(long long lo, long long hi) { return hi >= lo ? hi - lo + 1 : 0; }

// One query row's position and the key ranges its window and sinks reach (empty: hi < lo).
struct RowKeys {
  long long pos = 0, wLo = 1, wHi = 0, sinkHi = -1;
  bool inWindowOrSink(long long j) const { return j <= sinkHi || (j >= wLo && j <= wHi); }
  // Keys of [lo, hi] the window or the sinks reach.
  long long windowSinkCount(long long lo, long long hi) const {
    const long long w = spanOf(std::max(lo, wLo), std::min(hi, wHi));
    const long long s = spanOf(lo, std::min(hi, sinkHi));
    const long long both = spanOf(std::max(lo, wLo), std::min({hi, wHi, sinkHi}));
    return w + s - both;
  }
};

// E(x) for x = s - m <= 0: exp, or the contract's polynomial exp2 with float32 rounding at
// every step as lib/reference/exp.ts makeExp (Horner steps in double, rounded once to float).
class Exponential {
 public:
  explicit Exponential(const std::vector<float>& c) : c_(c) {}
  double operator()(double x) const {
    if (c_.empty()) return std::exp(x);
    static const float kLog2e = static_cast<float>(1.4426950408889634);
    float t = static_cast<float>(x * static_cast<double>(kLog2e));
    if (t < -127.0f) t = -127.0f;
    const double n = std::floor(static_cast<double>(t));
    const float f = static_cast<float>(static_cast<double>(t) - n);
    const int degree = static_cast<int>(c_.size()) - 1;
    float p = c_[degree];
    for (int d = degree - 1; d >= 0; d--) p = static_cast<float>(static_cast<double>(p) * f + c_[d]);
    return static_cast<float>(std::ldexp(static_cast<double>(p), static_cast<int>(n)));
  }

 private:
  const std::vector<float>& c_;
};

struct Item {
  // Per row of this (batch row, kv head), in the reference's order (i, then the group's heads).
  std::vector<double> dropped;
  long long keptPairs = 0, allowedPairs = 0, pagesVisited = 0, pagesDense = 0, pagesRead = 0, emptyRows = 0;
};

class Step {
 public:
  Step(const DecodeProblem& p, const float* q, const PagedCache& c, DecodeResult& r) : p_(p), c_(c), r_(r), E_(p.polyCoefficients) {
    q64_.assign(q, q + static_cast<std::size_t>(p.lengths.size()) * p.heads * p.m * p.headDim);
  }

  void run(std::size_t b, int hk, Item& item) const;

 private:
  double score(std::size_t qOff, std::size_t keyOff) const {
    double s = 0;
    for (int d = 0; d < p_.headDim; d++) s += q64_[qOff + d] * static_cast<double>(c_.keys[keyOff + d]);
    return p_.scale * s;
  }
  std::size_t keyOffset(std::int32_t page, int hk, long long slot) const {
    return ((static_cast<std::size_t>(page) * c_.kvHeads + hk) * c_.pageSize + static_cast<std::size_t>(slot)) * c_.headDim;
  }
  double pageEstimate(std::size_t b, long long J, std::size_t qOff, std::int32_t page, int hk, long long count) const;
  struct Chosen {
    std::vector<std::uint8_t> kept;
    double dropped = 0;
  };
  std::vector<Chosen> choosePages(std::size_t b, int i, const RowKeys& keys, const std::int32_t* pages, const std::vector<long long>& cand,
                                  const std::vector<long long>& nCand, const std::vector<std::vector<double>>& est, int hk) const;

  const DecodeProblem& p_;
  const PagedCache& c_;
  DecodeResult& r_;
  Exponential E_;
  std::vector<double> q64_;
};

double Step::pageEstimate(std::size_t b, long long J, std::size_t qOff, std::int32_t page, int hk, long long count) const {
  const int D = p_.headDim;
  // The pool's metadata, or for a partial last page the copy taken when the step began.
  const std::vector<double>& snap = p_.lastPageMeta[b];
  const bool last = !snap.empty() && J == (p_.lengths[b] - 1) / c_.pageSize;
  const std::size_t plane = static_cast<std::size_t>(c_.kvHeads) * D;
  const std::size_t meta = last ? static_cast<std::size_t>(hk) * D : (static_cast<std::size_t>(page) * c_.kvHeads + hk) * D;
  const double* kMin = last ? snap.data() : c_.kMin;
  const double* kMax = last ? snap.data() + plane : c_.kMax;
  const double* kSum = last ? snap.data() + 2 * plane : c_.kSum;
  const double* kSumSq = last ? snap.data() + 3 * plane : c_.kSumSq;
  double e = 0;
  if (p_.estimate == PageEstimate::Bound) {
    for (int d = 0; d < D; d++) {
      const double x = q64_[qOff + d];
      e += std::max(x * kMin[meta + d], x * kMax[meta + d]);
    }
    return p_.scale * e;
  }
  double varTerm = 0;
  for (int d = 0; d < D; d++) {
    const double mean = kSum[meta + d] / static_cast<double>(count);
    e += q64_[qOff + d] * mean;
    if (p_.estimate == PageEstimate::Moment) varTerm += q64_[qOff + d] * q64_[qOff + d] * std::max(0.0, kSumSq[meta + d] / static_cast<double>(count) - mean * mean);
  }
  return p_.scale * e + (p_.estimate == PageEstimate::Moment ? ((p_.scale * p_.scale) / 2) * varTerm : 0);
}

// PSA's rule: the shortest prefix P of `order` with ln(1 - τ) + ln Z(P) >= ln τ + ln R(P).
template <typename PerPage, typename LogWeight>
std::size_t progressiveCount(double base, const PerPage& perPage, const std::vector<std::size_t>& order, const LogWeight& logWeight, double tau) {
  const std::size_t n = order.size();
  std::vector<double> suffix(n + 1, kNegInf);
  for (std::size_t r = n; r-- > 0;) suffix[r] = logAddExp(suffix[r + 1], logWeight(order[r]));
  const double a = std::log(1 - tau);
  const double t = std::log(tau);
  double lZ = base;
  for (std::size_t r = 0; r <= n; r++) {
    if (a + lZ >= t + suffix[r]) return r;
    if (r < n) lZ = logAddExp(lZ, perPage(order[r]));
  }
  return n;
}

std::vector<Step::Chosen> Step::choosePages(std::size_t b, int i, const RowKeys& keys, const std::int32_t* pages, const std::vector<long long>& cand,
                                            const std::vector<long long>& nCand, const std::vector<std::vector<double>>& est, int hk) const {
  const std::size_t nc = cand.size();
  const int group = p_.heads / p_.kvHeads;
  const long long ps = c_.pageSize;
  auto orderOf = [&](const std::vector<double>& e) {
    std::vector<std::size_t> o(nc);
    std::iota(o.begin(), o.end(), std::size_t{0});
    std::sort(o.begin(), o.end(), [&](std::size_t x, std::size_t y) { return e[x] > e[y] || (e[x] == e[y] && x < y); });
    return o;
  };
  std::vector<std::vector<std::size_t>> orders;
  if (p_.shareAcrossGroup) {
    std::vector<double> meanEst(nc);
    for (std::size_t c = 0; c < nc; c++) {
      double s = 0;
      for (const auto& e : est) s += e[c];
      meanEst[c] = s / static_cast<double>(est.size());
    }
    orders.assign(group, orderOf(meanEst));
  } else {
    for (const auto& e : est) orders.push_back(orderOf(e));
  }
  // Exact log-mass per head: of the window and sinks, and lazily of each candidate page.
  struct Mass {
    double base = kNegInf;
    std::vector<double> memo;
  };
  std::vector<Mass> mass(group);
  std::vector<double> xs;
  for (int g = 0; g < group; g++) {
    const std::size_t qOff = ((b * p_.heads + static_cast<std::size_t>(hk * group + g)) * p_.m + i) * p_.headDim;
    auto keyScore = [&](long long j) {
      const long long J = j / ps;
      return score(qOff, keyOffset(pages[J], hk, j - J * ps));
    };
    xs.clear();
    for (long long j = 0; j <= keys.sinkHi; j++) xs.push_back(keyScore(j));
    for (long long j = std::max(keys.wLo, keys.sinkHi + 1); j <= keys.wHi; j++) xs.push_back(keyScore(j));
    mass[g].base = logSumExp(xs);
    mass[g].memo.assign(nc, std::numeric_limits<double>::quiet_NaN());
  }
  auto perPage = [&](int g, std::size_t c) {
    double& m = mass[g].memo[c];
    if (std::isnan(m)) {
      const std::size_t qOff = ((b * p_.heads + static_cast<std::size_t>(hk * group + g)) * p_.m + i) * p_.headDim;
      const long long J = cand[c];
      std::vector<double> page;
      for (long long j = J * ps; j <= std::min(keys.pos, J * ps + ps - 1); j++) {
        if (!keys.inWindowOrSink(j)) page.push_back(score(qOff, keyOffset(pages[J], hk, j - J * ps)));
      }
      m = logSumExp(page);
    }
    return m;
  };
  auto logWeight = [&](int g, std::size_t c) { return std::log(static_cast<double>(nCand[c])) + est[g][c]; };
  auto clamp = [&](long long n) { return std::min({std::max(n, p_.minPages), p_.maxPages, static_cast<long long>(nc)}); };
  std::vector<long long> counts(group);
  for (int g = 0; g < group; g++) {
    if (p_.rule == PageRule::Ratio) counts[g] = clamp(ceilTolerant(p_.ruleValue * static_cast<double>(nc)));
    else if (p_.rule == PageRule::TopBlocks) counts[g] = clamp(static_cast<long long>(p_.ruleValue));
    else counts[g] = clamp(static_cast<long long>(progressiveCount(mass[g].base, [&](std::size_t c) { return perPage(g, c); }, orders[g], [&](std::size_t c) { return logWeight(g, c); }, p_.ruleValue)));
  }
  // Shared: the shortest prefix of the shared order that meets every head's own rule.
  if (p_.shareAcrossGroup) std::fill(counts.begin(), counts.end(), *std::max_element(counts.begin(), counts.end()));
  std::vector<Chosen> out(group);
  for (int g = 0; g < group; g++) {
    out[g].kept.assign(nc, 0);
    for (long long r = 0; r < counts[g]; r++) out[g].kept[orders[g][r]] = 1;
    double lZ = mass[g].base;
    double lR = kNegInf;
    for (std::size_t c = 0; c < nc; c++) {
      if (out[g].kept[c]) lZ = logAddExp(lZ, perPage(g, c));
      else lR = logAddExp(lR, logWeight(g, c));
    }
    out[g].dropped = lR == kNegInf ? 0 : 1 / (1 + std::exp(lZ - lR));
  }
  return out;
}

void Step::run(std::size_t b, int hk, Item& item) const {
  const int H = p_.heads, m = p_.m, D = p_.headDim, group = H / p_.kvHeads;
  const long long ps = c_.pageSize;
  const long long L = p_.lengths[b];
  const std::int32_t* pages = p_.pageTables[b];
  const long long nPages = (L + ps - 1) / ps;
  const bool sparse = p_.windowLeft >= 0 || p_.globalTokens > 0 || p_.rule != PageRule::None;
  std::vector<std::uint8_t> readHere(static_cast<std::size_t>(nPages), 0);
  std::vector<std::size_t> idx;
  std::vector<double> sc, acc(static_cast<std::size_t>(D));
  for (int i = 0; i < m; i++) {
    RowKeys keys;
    keys.pos = L - m + i;
    if (p_.windowLeft >= 0) {
      keys.wLo = std::max(0LL, keys.pos - p_.windowLeft);
      keys.wHi = std::min(keys.pos, keys.pos + p_.windowRight);
    }
    keys.sinkHi = std::min(keys.pos, p_.globalTokens - 1);
    const long long rowPages = keys.pos / ps + 1;
    // Candidates: pages with a causally allowed key outside the window and the sinks.
    std::vector<long long> cand, nCand;
    if (p_.rule != PageRule::None) {
      for (long long J = 0; J < rowPages; J++) {
        const long long lo = J * ps, hi = std::min(keys.pos, lo + ps - 1);
        const long long n = spanOf(lo, hi) - keys.windowSinkCount(lo, hi);
        if (n > 0) {
          cand.push_back(J);
          nCand.push_back(n);
        }
      }
    }
    std::vector<std::vector<double>> est(group, std::vector<double>(cand.size()));
    for (int g = 0; g < group; g++) {
      const std::size_t qOff = ((b * H + static_cast<std::size_t>(hk * group + g)) * m + i) * D;
      for (std::size_t c = 0; c < cand.size(); c++) est[g][c] = pageEstimate(b, cand[c], qOff, pages[cand[c]], hk, std::min(ps, L - cand[c] * ps));
    }
    std::vector<Chosen> chosen = p_.rule != PageRule::None ? choosePages(b, i, keys, pages, cand, nCand, est, hk) : std::vector<Chosen>(group);
    for (int g = 0; g < group; g++) {
      const int h = hk * group + g;
      const std::size_t o = (b * H + h) * m + i;
      const std::size_t qOff = o * D;
      std::vector<std::uint8_t> kept(static_cast<std::size_t>(rowPages), sparse ? 0 : 1);
      for (std::size_t c = 0; c < cand.size(); c++) if (chosen[g].kept[c]) kept[cand[c]] = 1;
      item.allowedPairs += keys.pos + 1;
      item.pagesDense += rowPages;
      item.dropped.push_back(chosen[g].dropped);
      // Allowed keys: causal, and (dense, or in the window, a sink, or a kept page).
      idx.clear();
      sc.clear();
      std::vector<std::int32_t> visited;
      for (long long J = 0; J * ps <= keys.pos; J++) {
        const long long lo = J * ps, hi = std::min(keys.pos, lo + ps - 1);
        const bool whole = kept[J] == 1;
        if (!whole && keys.windowSinkCount(lo, hi) == 0) continue;
        const std::size_t page = keyOffset(pages[J], hk, 0);
        for (long long j = lo; j <= hi; j++) {
          if (!whole && !keys.inWindowOrSink(j)) continue;
          const std::size_t off = page + static_cast<std::size_t>(j - lo) * D;
          idx.push_back(off);
          sc.push_back(score(qOff, off));
        }
        visited.push_back(static_cast<std::int32_t>(J));
      }
      item.pagesVisited += static_cast<long long>(visited.size());
      for (std::int32_t J : visited) readHere[J] = 1;
      const std::size_t n = sc.size();
      double tau = kNegInf;
      if (p_.topK != DecodeTopK::None) {
        const long long k = p_.topK == DecodeTopK::Count ? p_.topKCount : std::max(1LL, ceilTolerant(p_.topKRatio * static_cast<double>(n)));
        if (static_cast<long long>(n) > k) {
          std::vector<double> scratch(sc);
          std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<double>());
          tau = scratch[static_cast<std::size_t>(k - 1)];
        }
      }
      double mx = kNegInf;
      for (double s : sc) if (!(s < tau) && s > mx) mx = s;
      double sum = 0;
      long long kept_ = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::size_t c = 0; c < n; c++) {
        if (sc[c] < tau) continue;
        const double w = E_(sc[c] - mx);
        kept_++;
        sum += w;
        const float* v = c_.values + idx[c];  // keys and values share offsets
        for (int d = 0; d < D; d++) acc[d] += w * static_cast<double>(v[d]);
      }
      item.keptPairs += kept_;
      if (kept_ == 0) item.emptyRows++;
      const double inv = sum > 0 ? 1 / sum : 0;
      for (int d = 0; d < D; d++) r_.output[qOff + d] = static_cast<float>(acc[d] * inv);
      if (r_.lse) r_.lse[o] = kept_ == 0 ? -std::numeric_limits<float>::infinity() : static_cast<float>(mx + std::log(sum));
      if (r_.wantPages) r_.pages[o] = std::move(visited);
    }
  }
  for (std::uint8_t x : readHere) item.pagesRead += x;
}

}  // namespace

void decode(const DecodeProblem& p, const float* q, const PagedCache& cache, DecodeResult& r, int threads) {
  const std::size_t B = p.lengths.size();
  const std::size_t rows = B * static_cast<std::size_t>(p.heads) * p.m;
  if (r.wantPages) r.pages.assign(rows, {});
  const Step step(p, q, cache, r);
  std::vector<Item> items(B * static_cast<std::size_t>(p.kvHeads));
  ThreadPool::shared().run(threads, static_cast<std::int64_t>(items.size()), [&](std::int64_t it, int) {
    step.run(static_cast<std::size_t>(it) / p.kvHeads, static_cast<int>(it % p.kvHeads), items[static_cast<std::size_t>(it)]);
  });
  double droppedSum = 0;
  r.droppedMax = 0;
  for (std::size_t b = 0; b < B; b++) r.pagesReadDense += static_cast<long long>(p.kvHeads) * ((p.lengths[b] + cache.pageSize - 1) / cache.pageSize);
  for (const Item& it : items) {
    r.keptPairs += it.keptPairs;
    r.allowedPairs += it.allowedPairs;
    r.pagesVisited += it.pagesVisited;
    r.pagesDense += it.pagesDense;
    r.pagesRead += it.pagesRead;
    r.emptyRows += it.emptyRows;
    for (double d : it.dropped) {
      r.droppedMax = std::max(r.droppedMax, d);
      droppedSum += d;
    }
  }
  r.droppedMean = rows > 0 ? droppedSum / static_cast<double>(rows) : 0;
}

}  // namespace psa::cpu
