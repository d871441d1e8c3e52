#include "backward.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "score_tile.h"
#include "thread_pool.h"

namespace psa::cpu {

#if !defined(PSA_CPU_HAVE_AVX2)
const BackwardKernels* avx2BackwardKernels() { return nullptr; }
#endif

const BackwardKernels& backwardKernelsFor(const Kernels& forward) {
  const BackwardKernels* avx2 = avx2BackwardKernels();
  return avx2 && &forward == avx2Kernels() ? *avx2 : portableBackwardKernels();
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Query rows per pass-1 step: their tile row over every visited key stays in L2, as in the
// forward. Query rows per pass-2 tile against one key block.
constexpr int kRowsPerPass = 16;
constexpr int kRowsPerTile = 64;

int roundUp(int x, int m) { return (x + m - 1) / m * m; }

// K and V of every (batch, kv head) per key block, both ways: transposed (a channel per row of
// bs floats, the scores kernel's right-hand side) and as key rows paddedDims apart (what the
// accumulate kernels read); zeros past the last key.
struct KeyBlocks {
  int bs, dims, paddedDims, blocks;
  std::vector<float> kt, vt, k, v;
  std::size_t tOffset(int bhk, int J) const { return (static_cast<std::size_t>(bhk) * blocks + J) * dims * bs; }
  std::size_t rOffset(int bhk, int J) const { return (static_cast<std::size_t>(bhk) * blocks + J) * bs * paddedDims; }
};

KeyBlocks packKeys(const Problem& p, int bs, const float* k, const float* v, int threads) {
  KeyBlocks kb{bs, p.headDim, roundUp(p.headDim, kColStep), p.numKeyBlocks(bs), {}, {}, {}, {}};
  const std::size_t heads = static_cast<std::size_t>(p.batch) * p.kvHeads;
  kb.kt.assign(heads * kb.blocks * kb.dims * bs, 0.0f);
  kb.vt.assign(kb.kt.size(), 0.0f);
  kb.k.assign(heads * kb.blocks * bs * kb.paddedDims, 0.0f);
  kb.v.assign(kb.k.size(), 0.0f);
  ThreadPool::shared().run(threads, static_cast<std::int64_t>(heads), [&](std::int64_t item, int) {
    const int bhk = static_cast<int>(item);
    const int b = bhk / p.kvHeads;
    const int hk = bhk % p.kvHeads;
    for (int j = 0; j < p.seqK; j++) {
      const float* kr = k + p.rowBase(b, hk, p.kvHeads, p.seqK, j);
      const float* vr = v + p.rowBase(b, hk, p.kvHeads, p.seqK, j);
      const std::size_t t = kb.tOffset(bhk, j / bs) + j % bs;
      const std::size_t r = kb.rOffset(bhk, j / bs) + static_cast<std::size_t>(j % bs) * kb.paddedDims;
      for (int d = 0; d < p.headDim; d++) {
        kb.kt[t + static_cast<std::size_t>(d) * bs] = kr[d];
        kb.vt[t + static_cast<std::size_t>(d) * bs] = vr[d];
      }
      std::memcpy(kb.k.data() + r, kr, sizeof(float) * p.headDim);
      std::memcpy(kb.v.data() + r, vr, sizeof(float) * p.headDim);
    }
  });
  return kb;
}

// Q and dO of every (batch, head) as rows paddedDims apart, with kRowStep zero rows past the
// last, so that the padded rows of a tile stay in bounds.
struct QueryRows {
  int rowsPerHead, paddedDims;
  std::vector<float> q, dO;
  std::size_t offset(int bh, int i) const { return (static_cast<std::size_t>(bh) * rowsPerHead + i) * paddedDims; }
};

QueryRows packQueries(const Problem& p, const float* q, const float* dO, int threads) {
  QueryRows qr{p.seqQ + kRowStep, roundUp(p.headDim, kColStep), {}, {}};
  const std::size_t heads = static_cast<std::size_t>(p.batch) * p.heads;
  qr.q.assign(heads * qr.rowsPerHead * qr.paddedDims, 0.0f);
  qr.dO.assign(qr.q.size(), 0.0f);
  ThreadPool::shared().run(threads, static_cast<std::int64_t>(heads), [&](std::int64_t item, int) {
    const int bh = static_cast<int>(item);
    for (int i = 0; i < p.seqQ; i++) {
      const std::int64_t src = p.rowBase(bh / p.heads, bh % p.heads, p.heads, p.seqQ, i);
      std::memcpy(qr.q.data() + qr.offset(bh, i), q + src, sizeof(float) * p.headDim);
      std::memcpy(qr.dO.data() + qr.offset(bh, i), dO + src, sizeof(float) * p.headDim);
    }
  });
  return qr;
}

// What pass 1 finds per query row [batch, heads, seqQ] and pass 2 reuses: the kept-set
// threshold, the row maximum, 1 / sum (0 for an empty row) and D_i = dO_i · O_i.
struct RowStats {
  std::vector<float> tau, max, invSum, d;
};

// A query block's visit of a key block (the layout transposed).
struct Visit {
  int bh, queryBlock;
  std::uint8_t flags;
};

struct Workspace {
  std::vector<float> s, dp, e, o, acc;
};

struct Backward {
  const Problem& p;
  const BlockLayout& layout;
  int qbs;
  const KeyBlocks& keys;
  const QueryRows& rows;
  const float* thresholds;
  const Gradients& out;
  const Kernels& kernels;
  const BackwardKernels& bk;
  RowStats& stats;
  const float* coefficients;
  int degree;

  int queryBlocks() const { return (p.seqQ + qbs - 1) / qbs; }
  int kvHeadOf(int bh) const { return (bh / p.heads) * p.kvHeads + (bh % p.heads) / (p.heads / p.kvHeads); }
  float scale() const { return static_cast<float>(p.scale); }

  // Pass 1 over layout row r: dQ of its rows, and their statistics.
  void queryBlock(std::int64_t r, Workspace& w) const {
    const int bs = layout.blockSize;
    const int D = p.headDim;
    const int Dp = keys.paddedDims;
    const int bh = static_cast<int>(r / queryBlocks());
    const int I = static_cast<int>(r % queryBlocks());
    const int bhk = kvHeadOf(bh);
    const int e0 = layout.offsets[r];
    const int e1 = layout.offsets[r + 1];
    const int width = (e1 - e0) * bs;
    const int pitch = width + kColStep;
    const int end = std::min(p.seqQ, I * qbs + qbs);
    float* s = w.s.data();
    float* dp = w.dp.data();
    float* e = w.e.data();
    float* o = w.o.data();
    float* acc = w.acc.data();
    for (int i0 = I * qbs; i0 < end; i0 += kRowsPerPass) {
      const int n = std::min(end, i0 + kRowsPerPass) - i0;
      const int padded = roundUp(n, kRowStep);
      const float* qr = rows.q.data() + rows.offset(bh, i0);
      const float* gr = rows.dO.data() + rows.offset(bh, i0);
      for (int x = e0; x < e1; x++) {
        const int J = layout.indices[x];
        scoreTile(p, kernels, qr, Dp, i0, n, padded, keys.kt.data() + keys.tOffset(bhk, J), bs, J * bs, layout.flags[x], s + (x - e0) * bs, pitch);
        kernels.scores(gr, Dp, keys.vt.data() + keys.tOffset(bhk, J), bs, D, padded, bs, 1.0f, dp + (x - e0) * bs, pitch);
      }
      // The forward's softmax on a copy (it turns scores into numerators): each row's maximum
      // and sum, and E for O = P·V.
      for (int ii = 0; ii < padded; ii++) {
        if (ii < n) std::memcpy(e + ii * pitch, s + ii * pitch, sizeof(float) * width);
        else std::fill(e + ii * pitch, e + ii * pitch + width, 0.0f);
      }
      for (int ii = 0; ii < n; ii++) {
        const std::size_t g = static_cast<std::size_t>(bh) * p.seqQ + i0 + ii;
        stats.tau[g] = thresholds ? thresholds[g] : -kInf;
        const RowSoftmax sm = kernels.softmax(e + ii * pitch, width, stats.tau[g], coefficients, degree);
        stats.max[g] = sm.max;
        stats.invSum[g] = sm.kept == 0 ? 0.0f : 1.0f / sm.sum;
      }
      std::fill(o, o + padded * Dp, 0.0f);
      for (int x = e0; x < e1; x++) kernels.accumulate(e + (x - e0) * bs, pitch, keys.v.data() + keys.rOffset(bhk, layout.indices[x]), Dp, padded, bs, Dp, o, Dp);
      for (int ii = 0; ii < padded; ii++) {
        float* dpRow = dp + ii * pitch;
        const std::size_t g = static_cast<std::size_t>(bh) * p.seqQ + i0 + ii;
        if (ii >= n || stats.invSum[g] == 0.0f) {
          std::fill(dpRow, dpRow + width, 0.0f);
          if (ii < n) stats.d[g] = 0.0f;
          continue;
        }
        // D_i in double: it is subtracted from dP, where float32 sums would cancel.
        double d = 0;
        for (int c = 0; c < D; c++) d += static_cast<double>(gr[ii * Dp + c]) * o[ii * Dp + c];
        stats.d[g] = static_cast<float>(d * stats.invSum[g]);
        bk.gradientRow(s + ii * pitch, dpRow, width, stats.tau[g], stats.max[g], stats.invSum[g], stats.d[g], coefficients, degree);
      }
      std::fill(acc, acc + padded * Dp, 0.0f);
      for (int x = e0; x < e1; x++) kernels.accumulate(dp + (x - e0) * bs, pitch, keys.k.data() + keys.rOffset(bhk, layout.indices[x]), Dp, padded, bs, Dp, acc, Dp);
      for (int ii = 0; ii < n; ii++) {
        float* dst = out.dq + p.rowBase(bh / p.heads, bh % p.heads, p.heads, p.seqQ, i0 + ii);
        for (int c = 0; c < D; c++) dst[c] = scale() * acc[ii * Dp + c];
      }
    }
  }

  // Pass 2 over key block J of kv head bhk: dK and dV from every visit, in visit order.
  void keyBlock(int bhk, int J, const Visit* begin, const Visit* end, Workspace& w) const {
    const int bs = layout.blockSize;
    const int D = p.headDim;
    const int Dp = keys.paddedDims;
    const int pitch = bs + kColStep;
    float* s = w.s.data();
    float* dp = w.dp.data();
    float* dv = w.o.data();
    float* dk = w.acc.data();
    std::fill(dv, dv + bs * Dp, 0.0f);
    std::fill(dk, dk + bs * Dp, 0.0f);
    for (const Visit* v = begin; v != end; v++) {
      const int last = std::min(p.seqQ, v->queryBlock * qbs + qbs);
      for (int i0 = v->queryBlock * qbs; i0 < last; i0 += kRowsPerTile) {
        const int n = std::min(last, i0 + kRowsPerTile) - i0;
        const int padded = roundUp(n, kRowStep);
        const float* qr = rows.q.data() + rows.offset(v->bh, i0);
        const float* gr = rows.dO.data() + rows.offset(v->bh, i0);
        scoreTile(p, kernels, qr, Dp, i0, n, padded, keys.kt.data() + keys.tOffset(bhk, J), bs, J * bs, v->flags, s, pitch);
        kernels.scores(gr, Dp, keys.vt.data() + keys.tOffset(bhk, J), bs, D, padded, bs, 1.0f, dp, pitch);
        for (int ii = 0; ii < padded; ii++) {
          const std::size_t g = static_cast<std::size_t>(v->bh) * p.seqQ + i0 + ii;
          if (ii >= n || stats.invSum[g] == 0.0f) {
            std::fill(s + ii * pitch, s + ii * pitch + bs, 0.0f);
            std::fill(dp + ii * pitch, dp + ii * pitch + bs, 0.0f);
          } else {
            bk.gradientRow(s + ii * pitch, dp + ii * pitch, bs, stats.tau[g], stats.max[g], stats.invSum[g], stats.d[g], coefficients, degree);
          }
        }
        bk.accumulateTransposed(s, pitch, gr, Dp, padded, bs, Dp, dv, Dp);
        bk.accumulateTransposed(dp, pitch, qr, Dp, padded, bs, Dp, dk, Dp);
      }
    }
    const int b = bhk / p.kvHeads;
    const int hk = bhk % p.kvHeads;
    for (int c = 0; c < std::min(bs, p.seqK - J * bs); c++) {
      const std::int64_t dst = p.rowBase(b, hk, p.kvHeads, p.seqK, J * bs + c);
      for (int d = 0; d < D; d++) {
        out.dk[dst + d] = scale() * dk[c * Dp + d];
        out.dv[dst + d] = dv[c * Dp + d];
      }
    }
  }
};

}  // namespace

void backward(const Problem& p, const BlockLayout& layout, int queryBlockSize, const BackwardInputs& in, const Gradients& out, int threads,
              const Kernels& kernels, const BackwardKernels& backwardKernels) {
  const int bs = layout.blockSize;
  const int nQB = (p.seqQ + queryBlockSize - 1) / queryBlockSize;
  const int nKB = p.numKeyBlocks(bs);
  const std::int64_t layoutRows = static_cast<std::int64_t>(p.batch) * p.heads * nQB;
  const std::int64_t keyItems = static_cast<std::int64_t>(p.batch) * p.kvHeads * nKB;
  const KeyBlocks keys = packKeys(p, bs, in.k, in.v, threads);
  const QueryRows rows = packQueries(p, in.q, in.dO, threads);
  const std::size_t rowCount = static_cast<std::size_t>(p.batch) * p.heads * p.seqQ;
  RowStats stats{std::vector<float>(rowCount), std::vector<float>(rowCount), std::vector<float>(rowCount), std::vector<float>(rowCount)};

  // The layout transposed: the visits of each key block, in (head, query block) order.
  std::vector<std::int64_t> start(keyItems + 1, 0);
  std::vector<Visit> visits(layout.indices.size());
  const int group = p.heads / p.kvHeads;
  auto keyOf = [&](std::int64_t r, int x) { return (r / nQB / p.heads * p.kvHeads + r / nQB % p.heads / group) * nKB + layout.indices[x]; };
  for (std::int64_t r = 0; r < layoutRows; r++) {
    for (int x = layout.offsets[r]; x < layout.offsets[r + 1]; x++) start[keyOf(r, x) + 1]++;
  }
  for (std::int64_t i = 0; i < keyItems; i++) start[i + 1] += start[i];
  std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
  for (std::int64_t r = 0; r < layoutRows; r++) {
    for (int x = layout.offsets[r]; x < layout.offsets[r + 1]; x++) {
      visits[fill[keyOf(r, x)]++] = Visit{static_cast<int>(r / nQB), static_cast<int>(r % nQB), layout.flags[x]};
    }
  }

  int widest = 0;
  for (std::int64_t r = 0; r < layoutRows; r++) widest = std::max(widest, (layout.offsets[r + 1] - layout.offsets[r]) * bs);
  const std::size_t tile = std::max(static_cast<std::size_t>(kRowsPerPass) * (widest + kColStep), static_cast<std::size_t>(kRowsPerTile) * (bs + kColStep));
  const std::size_t acc = static_cast<std::size_t>(std::max(kRowsPerPass, bs)) * keys.paddedDims;
  // A workspace per thread that can have an item (a row of pass 1 may be as wide as seqK).
  const int workers = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, std::max(layoutRows, keyItems))));
  std::vector<Workspace> work(workers);
  for (Workspace& w : work) {
    w.s.resize(tile);
    w.dp.resize(tile);
    w.e.resize(static_cast<std::size_t>(kRowsPerPass) * (widest + kColStep));
    w.o.resize(acc);
    w.acc.resize(acc);
  }
  const Backward pass{p, layout, queryBlockSize, keys, rows, in.thresholds, out, kernels, backwardKernels, stats,
                      p.polyCoefficients.empty() ? nullptr : p.polyCoefficients.data(), static_cast<int>(p.polyCoefficients.size()) - 1};
  ThreadPool& pool = ThreadPool::shared();
  pool.run(workers, layoutRows, [&](std::int64_t r, int worker) { pass.queryBlock(r, work[worker]); });
  pool.run(workers, keyItems, [&](std::int64_t item, int worker) {
    pass.keyBlock(static_cast<int>(item / nKB), static_cast<int>(item % nKB), visits.data() + start[item], visits.data() + start[item + 1], work[worker]);
  });
}

}  // namespace psa::cpu
