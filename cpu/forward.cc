#include "forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <tuple>
#include <vector>

#include "mask.h"
#include "score_tile.h"
#include "thread_pool.h"

namespace psa::cpu {
namespace {

// Query rows per pass: their scores against every visited key (32 x seqK floats, 512 KB at 4096
// keys) stay in L2 through the score, softmax and P·V steps, and each key block loaded from
// L3 serves 32 rows (16 left the 4096-key passes bound by K and V traffic); kRowStep divides it.
constexpr int kRowsPerPass = 32;
constexpr float kInf = std::numeric_limits<float>::infinity();

int roundUp(int x, int m) { return (x + m - 1) / m * m; }

// K and V of every (batch, kv head), repacked once per call: K transposed per key block
// (kt[J][d][c], rows bs floats apart, so a block's Kᵀ rows never alias in L1 the way a whole
// sequence's would) and V with channels padded to kColStep; zeros past the last key.
struct PackedKeys {
  int bs, dims, paddedDims, keyBlocks;
  std::vector<float> kt;
  std::vector<float> v;
  std::size_t ktOffset(int bhk, int J) const { return (static_cast<std::size_t>(bhk) * keyBlocks + J) * dims * bs; }
  std::size_t vOffset(int bhk, int J) const { return (static_cast<std::size_t>(bhk) * keyBlocks + J) * bs * paddedDims; }
};

PackedKeys pack(const Problem& p, int bs, const float* k, const float* v, int threads) {
  PackedKeys pk{bs, p.headDim, roundUp(p.headDim, kColStep), p.numKeyBlocks(bs), {}, {}};
  const std::size_t heads = static_cast<std::size_t>(p.batch) * p.kvHeads;
  pk.kt.assign(heads * pk.keyBlocks * pk.dims * bs, 0.0f);
  pk.v.assign(heads * pk.keyBlocks * bs * pk.paddedDims, 0.0f);
  ThreadPool::shared().run(threads, static_cast<std::int64_t>(heads), [&](std::int64_t bhk, int) {
    const int b = static_cast<int>(bhk) / p.kvHeads;
    const int hk = static_cast<int>(bhk) % p.kvHeads;
    for (int j = 0; j < p.seqK; j++) {
      const float* kr = k + p.rowBase(b, hk, p.kvHeads, p.seqK, j);
      const float* vr = v + p.rowBase(b, hk, p.kvHeads, p.seqK, j);
      float* kt = pk.kt.data() + pk.ktOffset(static_cast<int>(bhk), j / bs) + j % bs;
      float* vp = pk.v.data() + pk.vOffset(static_cast<int>(bhk), j / bs) + static_cast<std::size_t>(j % bs) * pk.paddedDims;
      for (int d = 0; d < p.headDim; d++) kt[static_cast<std::size_t>(d) * bs] = kr[d];
      std::memcpy(vp, vr, sizeof(float) * p.headDim);
    }
  });
  return pk;
}

struct TopKScratch {
  std::vector<float> candidates[2];  // each: the widest row, padded to kColStep
  std::vector<int> counts = std::vector<int>(kTopKCountsSize);
};

// Below this many candidates nth_element finishes the search.
constexpr int kTopKDirect = 64;

// The k-th largest allowed score of a row (ties kept), or -inf when the row keeps all of them.
// A histogram of the scores over their range in equal buckets finds the run of buckets that
// holds the k-th largest (kernels.topKBucket); its scores are histogrammed again over their own
// range until few are left, and nth_element picks the (k - above)-th largest of those: a
// whole-row nth_element costs several times more.
float threshold(const Problem& p, const Kernels& kernels, const float* row, int width, TopKScratch& w) {
  RowRange range = kernels.rowRange(row, width);
  long long k = p.topK == TopKKind::Count ? p.topKCount : std::max(1LL, ceilTolerant(p.topKRatio * range.allowed));
  if (range.allowed <= k) return -kInf;
  const float* x = row;
  for (int round = 0;; round++) {
    if (range.lo == range.hi) return range.lo;
    // A range too wide for a finite step puts every score in one bucket, and the search stops.
    const float span = range.hi - range.lo;
    const float step = span < kInf && kTopKBuckets / span < kInf ? kTopKBuckets / span : 0.0f;
    std::vector<float>& out = w.candidates[round % 2];
    const TopKBucket b = kernels.topKBucket(x, width, range.lo, step, k, range.allowed, w.counts.data(), out.data());
    k -= b.above;
    if (b.candidates <= kTopKDirect || b.candidates == range.allowed || step == 0) {
      const auto kth = out.begin() + (k - 1);
      std::nth_element(out.begin(), kth, out.begin() + b.candidates, std::greater<float>());
      return *kth;
    }
    width = roundUp(b.candidates, kColStep);
    std::fill(out.begin() + b.candidates, out.begin() + width, -kInf);
    x = out.data();
    range = kernels.rowRange(x, width);
  }
}

struct Scratch {
  std::vector<float> q, s, o, sums;
  TopKScratch topK;
  std::int64_t keptPairs = 0;
  std::int64_t emptyRows = 0;
};

// Rows [i0, i0 + rows) of one layout row: query block I of head h in batch b.
struct RowPass {
  int b, h, bhk, e0, e1, width, pitch, i0, rows, paddedRows;
};

struct Pass {
  const Problem& p;
  const BlockLayout& layout;
  const PackedKeys& keys;
  const float* q;
  ForwardResult& out;
  const Kernels& kernels;

  // The first query row of layout row r.
  int firstRow(std::int64_t r) const { return static_cast<int>(r % p.numQueryBlocks(layout.queryRows())) * layout.queryRows(); }

  RowPass passOf(std::int64_t r, int i0) const {
    const int bs = layout.blockSize;
    const int nQB = p.numQueryBlocks(layout.queryRows());
    const int I = static_cast<int>(r % nQB);
    const int h = static_cast<int>(r / nQB) % p.heads;
    const int b = static_cast<int>(r / nQB) / p.heads;
    const int e0 = layout.offsets[r];
    const int e1 = layout.offsets[r + 1];
    const int width = (e1 - e0) * bs;
    const int rows = std::min({p.seqQ, (I + 1) * layout.queryRows(), i0 + kRowsPerPass}) - i0;
    // The pitch is not a power of two: rows must not share L1 sets.
    return {b, h, b * p.kvHeads + h / (p.heads / p.kvHeads), e0, e1, width, width + kColStep, i0, rows, roundUp(rows, kRowStep)};
  }

  // Scores of entries [eBegin, eEnd) of the pass into its tile row `s`, masked; padded rows hold junk.
  void score(const RowPass& t, int eBegin, int eEnd, float* qs, float* s) const {
    const int bs = layout.blockSize;
    const int D = p.headDim;
    for (int ii = 0; ii < t.paddedRows; ii++) {
      float* dst = qs + static_cast<std::size_t>(ii) * D;
      if (ii < t.rows) std::memcpy(dst, q + p.rowBase(t.b, t.h, p.heads, p.seqQ, t.i0 + ii), sizeof(float) * D);
      else std::fill(dst, dst + D, 0.0f);
    }
    for (int e = eBegin; e < eEnd; e++) {
      scoreTile(p, kernels, qs, D, t.i0, t.rows, t.paddedRows, keys.kt.data() + keys.ktOffset(t.bhk, layout.indices[e]), bs, layout.indices[e] * bs, layout.flags[e],
                s + (e - t.e0) * bs, t.pitch);
    }
  }

  // Thresholds, softmax numerators in place, row sums; LSE, thresholds and counts written out.
  void softmax(const RowPass& t, float* s, float* sums, Scratch& w) const {
    const float* coefficients = p.polyCoefficients.empty() ? nullptr : p.polyCoefficients.data();
    const int degree = static_cast<int>(p.polyCoefficients.size()) - 1;
    for (int ii = t.rows; ii < t.paddedRows; ii++) std::fill(s + ii * t.pitch, s + ii * t.pitch + t.width, 0.0f);
    for (int ii = 0; ii < t.rows; ii++) {
      float* row = s + ii * t.pitch;
      const float tau = p.topK == TopKKind::None ? -kInf : threshold(p, kernels, row, t.width, w.topK);
      const RowSoftmax sm = kernels.softmax(row, t.width, tau, coefficients, degree);
      const std::size_t o = (static_cast<std::size_t>(t.b) * p.heads + t.h) * p.seqQ + t.i0 + ii;
      sums[ii] = sm.sum;
      w.keptPairs += sm.kept;
      if (sm.kept == 0) w.emptyRows++;
      if (out.thresholds) out.thresholds[o] = tau;
      if (out.lse) out.lse[o] = sm.kept == 0 ? -kInf : static_cast<float>(sm.max + std::log(static_cast<double>(sm.sum)));
    }
  }

  // o (paddedRows x paddedDims) += P · V over entries [eBegin, eEnd).
  void accumulate(const RowPass& t, int eBegin, int eEnd, const float* s, float* o) const {
    const int bs = layout.blockSize;
    const int Dp = keys.paddedDims;
    for (int e = eBegin; e < eEnd; e++) {
      kernels.accumulate(s + (e - t.e0) * bs, t.pitch, keys.v.data() + keys.vOffset(t.bhk, layout.indices[e]), Dp, t.paddedRows, bs, Dp, o, Dp);
    }
  }

  void write(const RowPass& t, const float* o, const float* sums) const {
    for (int ii = 0; ii < t.rows; ii++) {
      const float inv = sums[ii] > 0 ? 1.0f / sums[ii] : 0.0f;
      float* dst = out.output + p.rowBase(t.b, t.h, p.heads, p.seqQ, t.i0 + ii);
      for (int d = 0; d < p.headDim; d++) dst[d] = o[static_cast<std::size_t>(ii) * keys.paddedDims + d] * inv;
    }
  }

  // One layout row, kRowsPerPass rows at a time, on one thread.
  void run(std::int64_t r, Scratch& w) const {
    const int end = std::min(p.seqQ, firstRow(r) + layout.queryRows());
    for (int i0 = firstRow(r); i0 < end; i0 += kRowsPerPass) {
      const RowPass t = passOf(r, i0);
      score(t, t.e0, t.e1, w.q.data(), w.s.data());
      softmax(t, w.s.data(), w.sums.data(), w);
      std::fill(w.o.begin(), w.o.begin() + t.paddedRows * keys.paddedDims, 0.0f);
      accumulate(t, t.e0, t.e1, w.s.data(), w.o.data());
      write(t, w.o.data(), w.sums.data());
    }
  }
};

// Few query rows in all (decode-like shapes): the key blocks of each row are also split, in
// chunks of kChunkEntries, so that threads share a long row. Scores of every row are kept
// (at most kSplitRows rows), the softmax takes each row's true maximum and threshold, and the
// chunks' P·V are summed in chunk order. The split depends on the problem alone, never on the
// thread count.
constexpr int kSplitRows = 64;
constexpr int kChunkEntries = 16;

bool splitsKeys(const Problem& p) {
  return p.seqQ <= kRowsPerPass && static_cast<std::int64_t>(p.batch) * p.heads * p.seqQ <= kSplitRows;
}

void forwardSplit(const Pass& pass, std::int64_t rows, std::vector<Scratch>& scratch, int workers) {
  // With seqQ <= kRowsPerPass every layout row is a single pass.
  std::vector<RowPass> passes;
  std::vector<std::size_t> sOffset{0}, oOffset{0};
  std::vector<std::int64_t> chunkStart{0};
  const int Dp = pass.keys.paddedDims;
  for (std::int64_t r = 0; r < rows; r++) {
    const RowPass t = pass.passOf(r, pass.firstRow(r));
    passes.push_back(t);
    const int chunks = std::max(1, (t.e1 - t.e0 + kChunkEntries - 1) / kChunkEntries);
    chunkStart.push_back(chunkStart.back() + chunks);
    sOffset.push_back(sOffset.back() + static_cast<std::size_t>(t.paddedRows) * t.pitch);
    oOffset.push_back(oOffset.back() + static_cast<std::size_t>(chunks) * t.paddedRows * Dp);
  }
  std::vector<float> s(sOffset.back()), o(oOffset.back(), 0.0f), sums(rows * kRowsPerPass);
  const std::int64_t items = chunkStart.back();
  // (row, chunk) of a flat chunk index.
  auto chunkOf = [&](std::int64_t item) {
    const std::int64_t r = std::upper_bound(chunkStart.begin(), chunkStart.end(), item) - chunkStart.begin() - 1;
    const int c = static_cast<int>(item - chunkStart[r]);
    const RowPass& t = passes[r];
    return std::tuple{r, c, t.e0 + c * kChunkEntries, std::min(t.e1, t.e0 + (c + 1) * kChunkEntries)};
  };
  ThreadPool& pool = ThreadPool::shared();
  pool.run(workers, items, [&](std::int64_t item, int worker) {
    const auto [r, c, eBegin, eEnd] = chunkOf(item);
    pass.score(passes[r], eBegin, eEnd, scratch[worker].q.data(), s.data() + sOffset[r]);
  });
  pool.run(workers, rows, [&](std::int64_t r, int worker) { pass.softmax(passes[r], s.data() + sOffset[r], sums.data() + r * kRowsPerPass, scratch[worker]); });
  pool.run(workers, items, [&](std::int64_t item, int) {
    const auto [r, c, eBegin, eEnd] = chunkOf(item);
    const RowPass& t = passes[r];
    pass.accumulate(t, eBegin, eEnd, s.data() + sOffset[r], o.data() + oOffset[r] + static_cast<std::size_t>(c) * t.paddedRows * Dp);
  });
  pool.run(workers, rows, [&](std::int64_t r, int) {
    const RowPass& t = passes[r];
    float* total = o.data() + oOffset[r];
    const std::size_t n = static_cast<std::size_t>(t.paddedRows) * Dp;
    for (std::int64_t c = 1; c < chunkStart[r + 1] - chunkStart[r]; c++) {
      for (std::size_t i = 0; i < n; i++) total[i] += total[c * n + i];
    }
    pass.write(t, total, sums.data() + r * kRowsPerPass);
  });
}

}  // namespace

void forward(const Problem& p, const BlockLayout& layout, const float* q, const float* k, const float* v, ForwardResult& out,
             int threads, const Kernels& kernels) {
  const int bs = layout.blockSize;
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.heads * p.numQueryBlocks(layout.queryRows());
  int widest = 0;
  for (std::int64_t r = 0; r < rows; r++) widest = std::max(widest, (layout.offsets[r + 1] - layout.offsets[r]) * bs);
  const PackedKeys keys = pack(p, bs, k, v, threads);
  const bool split = splitsKeys(p);
  const int workers = std::max(1, split ? threads : static_cast<int>(std::min<std::int64_t>(threads, rows)));
  std::vector<Scratch> scratch(workers);
  for (Scratch& w : scratch) {
    w.q.resize(static_cast<std::size_t>(kRowsPerPass) * p.headDim);
    for (std::vector<float>& c : w.topK.candidates) c.resize(widest + kColStep);
    if (split) continue;  // the split keeps its tile rows and sums per layout row
    w.s.resize(static_cast<std::size_t>(kRowsPerPass) * (widest + kColStep));
    w.o.resize(static_cast<std::size_t>(kRowsPerPass) * keys.paddedDims);
    w.sums.resize(kRowsPerPass);
  }
  const Pass pass{p, layout, keys, q, out, kernels};
  if (split) forwardSplit(pass, rows, scratch, workers);
  else ThreadPool::shared().run(workers, rows, [&](std::int64_t r, int worker) { pass.run(r, scratch[worker]); });
  out.keptPairs = 0;
  out.emptyRows = 0;
  for (const Scratch& w : scratch) {
    out.keptPairs += w.keptPairs;
    out.emptyRows += w.emptyRows;
  }
}

}  // namespace psa::cpu
