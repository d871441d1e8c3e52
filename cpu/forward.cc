#include "forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "mask.h"
#include "thread_pool.h"

namespace psa::cpu {
namespace {

// Query rows per pass: their scores against every visited key (16 x seqK floats) stay in L2
// through the score, softmax and P·V steps; kRowStep divides it.
constexpr int kRowsPerPass = 16;
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

// Set the disallowed scores of rows [i0, i0 + rows) x keys [j0, j1] to -inf; `s` points at
// key j0 of the first row.
void maskTile(const MaskSpec& m, float* s, int pitch, int i0, int rows, int j0, int j1, bool selected) {
  for (int ii = 0; ii < rows; ii++) {
    const int i = i0 + ii;
    float* row = s + static_cast<std::ptrdiff_t>(ii) * pitch - j0;  // row[j] is key j
    if (selected) {
      for (int j = std::max(j0, std::min(j1, causalLimit(m, i)) + 1); j <= j1; j++) row[j] = -kInf;
    } else {
      const WindowSinkRanges r = windowSinkRanges(m, i, j0, j1);
      for (int j = j0; j <= j1; j++) {
        if (!((j >= r.winLo && j <= r.winHi) || (j >= r.sinkLo && j <= r.sinkHi))) row[j] = -kInf;
      }
    }
  }
}

// The k-th largest allowed score of a row (ties kept), or -inf when the row keeps all of them.
float threshold(const Problem& p, const float* row, int width, std::vector<float>& scratch) {
  int n = 0;
  for (int c = 0; c < width; c++) {
    if (row[c] != -kInf) scratch[n++] = row[c];
  }
  const long long k = p.topK == TopKKind::Count ? p.topKCount : std::max(1LL, ceilTolerant(p.topKRatio * n));
  if (n <= k) return -kInf;
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.begin() + n, std::greater<float>());
  return scratch[k - 1];
}

struct Scratch {
  std::vector<float> q, s, o, sums, selection;
  std::int64_t keptPairs = 0;
  std::int64_t emptyRows = 0;
};

struct Pass {
  const Problem& p;
  const BlockLayout& layout;
  const PackedKeys& keys;
  const float* q;
  ForwardResult& out;
  const Kernels& kernels;

  // One layout row: query block I of head h in batch b, 16 rows at a time.
  void run(std::int64_t r, Scratch& w) const {
    const int bs = layout.blockSize;
    const int nQB = p.numQueryBlocks(bs);
    const int I = static_cast<int>(r % nQB);
    const int h = static_cast<int>(r / nQB) % p.heads;
    const int b = static_cast<int>(r / nQB) / p.heads;
    const int bhk = b * p.kvHeads + h / (p.heads / p.kvHeads);
    const int e0 = layout.offsets[r];
    const int e1 = layout.offsets[r + 1];
    const int width = (e1 - e0) * bs;
    const int pitch = width + kColStep;  // not a power of two: rows must not share L1 sets
    const int D = p.headDim;
    const int Dp = keys.paddedDims;
    const float* coefficients = p.polyCoefficients.empty() ? nullptr : p.polyCoefficients.data();
    const int degree = static_cast<int>(p.polyCoefficients.size()) - 1;
    const int blockEnd = std::min(p.seqQ, I * bs + bs);
    for (int i0 = I * bs; i0 < blockEnd; i0 += kRowsPerPass) {
      const int rows = std::min(blockEnd - i0, kRowsPerPass);
      const int paddedRows = roundUp(rows, kRowStep);
      for (int ii = 0; ii < paddedRows; ii++) {
        float* dst = w.q.data() + static_cast<std::size_t>(ii) * D;
        if (ii < rows) std::memcpy(dst, q + p.rowBase(b, h, p.heads, p.seqQ, i0 + ii), sizeof(float) * D);
        else std::fill(dst, dst + D, 0.0f);
      }
      for (int e = e0; e < e1; e++) {
        const int j0 = layout.indices[e] * bs;
        const int cols = std::min(p.seqK, j0 + bs) - j0;
        float* tile = w.s.data() + (e - e0) * bs;
        kernels.scores(w.q.data(), D, keys.kt.data() + keys.ktOffset(bhk, layout.indices[e]), bs, D, paddedRows, bs, static_cast<float>(p.scale), tile, pitch);
        if (cols < bs) {
          for (int ii = 0; ii < rows; ii++) std::fill(tile + ii * pitch + cols, tile + ii * pitch + bs, -kInf);
        }
        if (!(layout.flags[e] & kBlockFull)) maskTile(p.mask, tile, pitch, i0, rows, j0, j0 + cols - 1, (layout.flags[e] & kBlockSelected) != 0);
      }
      for (int ii = rows; ii < paddedRows; ii++) std::fill(w.s.begin() + ii * pitch, w.s.begin() + ii * pitch + width, 0.0f);
      for (int ii = 0; ii < rows; ii++) {
        float* row = w.s.data() + ii * pitch;
        const float tau = p.topK == TopKKind::None ? -kInf : threshold(p, row, width, w.selection);
        const RowSoftmax sm = kernels.softmax(row, width, tau, coefficients, degree);
        const std::size_t o = (static_cast<std::size_t>(b) * p.heads + h) * p.seqQ + i0 + ii;
        w.sums[ii] = sm.sum;
        w.keptPairs += sm.kept;
        if (sm.kept == 0) w.emptyRows++;
        if (out.thresholds) out.thresholds[o] = tau;
        if (out.lse) out.lse[o] = sm.kept == 0 ? -kInf : static_cast<float>(sm.max + std::log(static_cast<double>(sm.sum)));
      }
      std::fill(w.o.begin(), w.o.begin() + paddedRows * Dp, 0.0f);
      for (int e = e0; e < e1; e++) {
        kernels.accumulate(w.s.data() + (e - e0) * bs, pitch, keys.v.data() + keys.vOffset(bhk, layout.indices[e]), Dp, paddedRows, bs, Dp, w.o.data(), Dp);
      }
      for (int ii = 0; ii < rows; ii++) {
        const float inv = w.sums[ii] > 0 ? 1.0f / w.sums[ii] : 0.0f;
        float* dst = out.output + p.rowBase(b, h, p.heads, p.seqQ, i0 + ii);
        for (int d = 0; d < D; d++) dst[d] = w.o[static_cast<std::size_t>(ii) * Dp + d] * inv;
      }
    }
  }
};

}  // namespace

void forward(const Problem& p, const BlockLayout& layout, const float* q, const float* k, const float* v, ForwardResult& out,
             int threads, const Kernels& kernels) {
  const int bs = layout.blockSize;
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.heads * p.numQueryBlocks(bs);
  int widest = 0;
  for (std::int64_t r = 0; r < rows; r++) widest = std::max(widest, (layout.offsets[r + 1] - layout.offsets[r]) * bs);
  const PackedKeys keys = pack(p, bs, k, v, threads);
  const int workers = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), std::max<std::int64_t>(rows, 1)));
  std::vector<Scratch> scratch(workers);
  for (Scratch& w : scratch) {
    w.q.resize(static_cast<std::size_t>(kRowsPerPass) * p.headDim);
    w.s.resize(static_cast<std::size_t>(kRowsPerPass) * (widest + kColStep));
    w.o.resize(static_cast<std::size_t>(kRowsPerPass) * keys.paddedDims);
    w.sums.resize(kRowsPerPass);
    w.selection.resize(widest);
  }
  const Pass pass{p, layout, keys, q, out, kernels};
  ThreadPool::shared().run(workers, rows, [&](std::int64_t r, int worker) { pass.run(r, scratch[worker]); });
  out.keptPairs = 0;
  out.emptyRows = 0;
  for (const Scratch& w : scratch) {
    out.keptPairs += w.keptPairs;
    out.emptyRows += w.emptyRows;
  }
}

}  // namespace psa::cpu
