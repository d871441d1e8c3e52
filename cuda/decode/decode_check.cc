// The decode kernels (cuda/decode) in the CPU model, through their host API (decode_api.h),
// against host functions in float64 over the same rounded 16-bit values:
//
//   append    the pool's keys and values bit for bit (each element rounded once, from float32
//             or from the other 16-bit type through float32), and the page metadata (min, max,
//             sum, sum of squares) of every touched page within float32 rounding;
//   attention causal, window, sinks, GQA groups packed into a CTA, m >= 1 queries, pages of
//             7 to 64 tokens, several splits: output and LSE against a float64 attention over
//             the keys the device's page flags allow (whole pages, or window and sinks);
//   plan      ratio and topBlocks keep their counts; progressive keeps the shortest prefix:
//             with the device's own order, Z >= tau (Z + R) holds at its count and fails one
//             page earlier (Z, R in float64 from the metadata and the keys), also where the
//             walk's first round ends before or after the stop;
//   top-k     the attention over the k best scores of the allowed keys;
//   merge     the LSE combine against a float64 merge, empty parts and empty rows included.
//
// Prints "PASS <case>" or "FAIL <case>: <why>" per case and "<n> failed"; exits 1 if any
// failed. --quick runs the smaller half (the sanitizer builds).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../emu/tests/check_util.h"
#include "../emu/counters.h"
#include "decode_api.h"

using namespace psa::gpu;
using namespace psa::check;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

MmaType mma_of(DType t) { return t == DType::BF16 ? MmaType::BF16 : MmaType::F16; }
double widen(std::uint16_t bits, DType t) { return twin::to_float(bits, mma_of(t)); }

struct Case {
  std::string name;
  DType type = DType::F16;
  int batch = 1, heads = 2, kvHeads = 1, m = 1, headDim = 16, pageSize = 16;
  std::vector<int> lengths{40};
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  int choice = 0;  // 0 none, 1 ratio, 2 topBlocks, 3 progressive
  double value = 0;
  int estimate = 2;
  bool share = false;
  int topK = 0;
  float scale = 0.25f;
};

// A pool filled through run_append in chunks, with the host copy of what it should hold.
struct Filled {
  PoolBuffers pool;
  std::vector<std::vector<std::int32_t>> pages;  // per sequence
  std::vector<std::uint16_t> keys, values;        // host mirror, pool layout
  ~Filled() { free_pool(pool); }
};

std::string fill(const Case& c, Filled& f, std::mt19937& rng) {
  const int D = c.headDim, H = c.kvHeads, ps = c.pageSize;
  int pages = 0;
  for (int L : c.lengths) pages += (L + ps - 1) / ps;
  f.pool.type = c.type;
  f.pool.pages = pages + 2;
  f.pool.kvHeads = H;
  f.pool.pageSize = ps;
  f.pool.headDim = D;
  Status s = alloc_pool(f.pool);
  if (!s.ok()) return "alloc_pool: " + s.message;
  const std::size_t poolElements = static_cast<std::size_t>(f.pool.pages) * H * ps * D;
  f.keys.assign(poolElements, 0);
  f.values.assign(poolElements, 0);
  // Pages handed out from the top of the pool down, so page order differs from sequence order.
  int next = f.pool.pages - 1;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t seq = 0; seq < c.lengths.size(); seq++) {
    const int L = c.lengths[seq];
    std::vector<std::int32_t>& table = f.pages.emplace_back();
    for (int at = 0; at < L;) {
      const int n = std::min(L - at, 1 + static_cast<int>(rng() % 23));
      AppendRequest r;
      r.pool = f.pool;
      r.sequences = 1;
      r.n = n;
      // Inputs alternate between float32 and the pool's 16-bit type.
      const bool wide = (at / 7) % 2 == 0;
      r.kType = wide ? DType::F32 : c.type;
      std::vector<float> k32(static_cast<std::size_t>(H) * n * D), v32(k32.size());
      std::vector<std::uint16_t> k16(k32.size()), v16(k32.size());
      for (std::size_t i = 0; i < k32.size(); i++) {
        k32[i] = normal(rng);
        v32[i] = normal(rng);
        k16[i] = encode(k32[i], mma_of(c.type));
        v16[i] = encode(v32[i], mma_of(c.type));
      }
      for (int t = 0; t < n; t++) {
        const int pos = at + t;
        if (pos % ps == 0) table.push_back(next--);
        r.slots.push_back(table[pos / ps] * ps + pos % ps);
      }
      for (int J = at / ps; J * ps < at + n; J++) {
        r.touched.push_back(table[J]);
        r.touchedKeys.push_back(std::min(ps, at + n - J * ps));
      }
      for (int h = 0; h < H; h++)
        for (int t = 0; t < n; t++)
          for (int d = 0; d < D; d++) {
            const int pos = at + t;
            const std::size_t dst = ((static_cast<std::size_t>(table[pos / ps]) * H + h) * ps + pos % ps) * D + d;
            const std::size_t src = (static_cast<std::size_t>(h) * n + t) * D + d;
            f.keys[dst] = k16[src];
            f.values[dst] = v16[src];
          }
      DeviceArray<float> dk32(wide ? k32.size() : 0), dv32(wide ? v32.size() : 0);
      DeviceArray<std::uint16_t> dk16(wide ? 0 : k16.size()), dv16(wide ? 0 : v16.size());
      if (wide) {
        dk32.put(k32);
        dv32.put(v32);
        r.k = Buffer{dk32.ptr, k32.size() * 4, 0};
        r.v = Buffer{dv32.ptr, v32.size() * 4, 0};
      } else {
        dk16.put(k16);
        dv16.put(v16);
        r.k = Buffer{dk16.ptr, k16.size() * 2, 0};
        r.v = Buffer{dv16.ptr, v16.size() * 2, 0};
      }
      if (!(s = run_append(r)).ok()) return "run_append: " + s.message;
      at += n;
    }
  }
  return "";
}

std::vector<std::uint16_t> read16(const Buffer& b, std::size_t n) {
  std::vector<std::uint16_t> h(n);
  cudaMemcpy(h.data(), b.ptr, n * 2, cudaMemcpyDeviceToHost);
  return h;
}

std::vector<float> read32(const Buffer& b, std::size_t n) {
  std::vector<float> h(n);
  cudaMemcpy(h.data(), b.ptr, n * 4, cudaMemcpyDeviceToHost);
  return h;
}

// The pool's keys and values bit for bit, and the metadata of every used page.
std::string check_pool(const Case& c, const Filled& f) {
  const int D = c.headDim, H = c.kvHeads, ps = c.pageSize;
  if (read16(f.pool.keys, f.keys.size()) != f.keys) return "keys differ from their rounded inputs";
  if (read16(f.pool.values, f.values.size()) != f.values) return "values differ from their rounded inputs";
  const std::vector<float> meta = read32(f.pool.meta, static_cast<std::size_t>(f.pool.pages) * H * 4 * D);
  for (std::size_t seq = 0; seq < f.pages.size(); seq++) {
    const int L = c.lengths[seq];
    for (std::size_t J = 0; J < f.pages[seq].size(); J++) {
      const int page = f.pages[seq][J];
      const int count = std::min(ps, L - static_cast<int>(J) * ps);
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
          double lo = kInf, hi = -kInf, sum = 0, sq = 0, mag = 0;
          for (int s = 0; s < count; s++) {
            const double x = widen(f.keys[((static_cast<std::size_t>(page) * H + h) * ps + s) * D + d], c.type);
            lo = std::min(lo, x);
            hi = std::max(hi, x);
            sum += x;
            sq += x * x;
            mag += std::fabs(x);
          }
          const float* m = &meta[(static_cast<std::size_t>(page) * H + h) * 4 * D + d];
          const double tol = 1e-6 * (mag + 1) * count;
          if (m[0] != lo || m[D] != hi || std::fabs(m[2 * D] - sum) > tol || std::fabs(m[3 * D] - sq) > tol * (mag + 1)) {
            return "metadata of page " + std::to_string(page) + " channel " + std::to_string(d) + " is off";
          }
        }
    }
  }
  return "";
}

struct Row {
  int pos;
  bool inWindowOrSink(int j, const Case& c) const {
    const bool sink = j < c.globalTokens;
    const bool window = c.windowLeft >= 0 && j >= static_cast<long long>(pos) - c.windowLeft && j <= static_cast<long long>(pos) + c.windowRight;
    return sink || window;
  }
};

double score(const Case& c, const Filled& f, const std::vector<std::uint16_t>& q, std::size_t row, int seq, int hk, int j) {
  const int D = c.headDim, ps = c.pageSize;
  const std::size_t key = ((static_cast<std::size_t>(f.pages[seq][j / ps]) * c.kvHeads + hk) * ps + j % ps) * D;
  double dot = 0;
  for (int d = 0; d < D; d++) dot += widen(q[row * D + d], c.type) * widen(f.keys[key + d], c.type);
  return c.scale * dot;
}

// A page's estimate for the row's query, in float64 from the device's metadata.
double estimate(const Case& c, const std::vector<float>& meta, const std::vector<std::uint16_t>& q, std::size_t row, int page, int hk, int count) {
  const int D = c.headDim;
  const float* m = &meta[(static_cast<std::size_t>(page) * c.kvHeads + hk) * 4 * D];
  double e = 0, var = 0;
  for (int d = 0; d < D; d++) {
    const double x = widen(q[row * D + d], c.type);
    if (c.estimate == 1) {
      e += std::max(x * m[d], x * m[D + d]);
      continue;
    }
    const double mean = m[2 * D + d] / count;
    e += x * mean;
    var += x * x * std::max(0.0, m[3 * D + d] / count - mean * mean);
  }
  return c.scale * e + (c.estimate == 2 ? c.scale * c.scale / 2 * var : 0.0);
}

// PSA's rule on the device's kept pages: they are the best estimates, Z >= tau (Z + R) holds
// for them, and (one head per row) fails without the last of them; all within float32 slack.
std::string check_progressive(const Case& c, const Filled& f, const std::vector<float>& meta, const std::vector<std::uint16_t>& q, std::size_t row, int b,
                              int hk, const Row& rk, const std::uint8_t* flags) {
  const int ps = c.pageSize, L = c.lengths[b];
  double base = 0;
  for (int j = 0; j <= rk.pos; j++) {
    if (rk.inWindowOrSink(j, c)) base += std::exp(score(c, f, q, row, b, hk, j));
  }
  struct Page {
    double est, mass, weight;
    bool kept;
  };
  std::vector<Page> pages;
  for (int J = 0; J * ps <= rk.pos; J++) {
    double mass = 0;
    int n = 0;
    for (int j = J * ps; j <= std::min(rk.pos, J * ps + ps - 1); j++) {
      if (rk.inWindowOrSink(j, c)) continue;
      mass += std::exp(score(c, f, q, row, b, hk, j));
      n++;
    }
    if (!n) continue;
    const int count = std::min(ps, L - J * ps);
    const double e = estimate(c, meta, q, row, f.pages[b][J], hk, count);
    // The order: this head's estimate, or with a shared selection the mean of the group's.
    double order = e;
    if (c.share) {
      const int G = c.heads / c.kvHeads, i = static_cast<int>(row % c.m);
      order = 0;
      for (int g = 0; g < G; g++) order += estimate(c, meta, q, (static_cast<std::size_t>(b) * c.heads + hk * G + g) * c.m + i, f.pages[b][J], hk, count) / G;
    }
    pages.push_back({order, mass, n * std::exp(e), (flags[J] & 1) != 0});
  }
  double Z = base, R = 0, lowestKept = kInf, bestDropped = -kInf, lastMass = 0, lastWeight = 0;
  for (const Page& p : pages) {
    if (p.kept) {
      Z += p.mass;
      if (p.est < lowestKept) {
        lowestKept = p.est;
        lastMass = p.mass;
        lastWeight = p.weight;
      }
    } else {
      R += p.weight;
      bestDropped = std::max(bestDropped, p.est);
    }
  }
  const double tau = c.value, slack = 1e-4;
  if (bestDropped > lowestKept + slack * (1 + std::fabs(lowestKept))) return "a dropped page's estimate beats a kept one's";
  if (Z < tau * (Z + R) * (1 - slack)) return "the kept pages do not reach tau";
  if (!c.share && lowestKept != kInf) {
    const double z = Z - lastMass, r = R + lastWeight;
    if (z >= tau * (z + r) * (1 + slack)) return "a shorter prefix already reaches tau";
  }
  return "";
}

// The step request of case c over its filled pool, with queries q.
DecodeRequest request_for(const Case& c, const Filled& f, const Buffer& q) {
  DecodeRequest r;
  r.pool = f.pool;
  r.q = q;
  r.qType = c.type;
  r.batch = c.batch;
  r.heads = c.heads;
  r.m = c.m;
  int stride = 1;
  for (const auto& t : f.pages) stride = std::max(stride, static_cast<int>(t.size()));
  r.tableStride = stride;
  r.pageTable.assign(static_cast<std::size_t>(c.batch) * stride, 0);
  for (int b = 0; b < c.batch; b++) std::copy(f.pages[b].begin(), f.pages[b].end(), r.pageTable.begin() + static_cast<std::size_t>(b) * stride);
  r.lengths.assign(c.lengths.begin(), c.lengths.end());
  r.scale = c.scale;
  r.windowLeft = c.windowLeft;
  r.windowRight = c.windowRight;
  r.globalTokens = c.globalTokens;
  r.sparse = c.windowLeft >= 0 || c.globalTokens > 0 || c.choice != 0;
  r.choice = c.choice;
  r.choiceValue = c.value;
  r.estimate = c.estimate;
  r.shareAcrossGroup = c.share;
  r.topK = c.topK;
  r.returnLse = true;
  r.returnPages = true;
  return r;
}

// Steps of one shape on one workspace: the first grows it; the next carve every temporary from
// it (the stream-ordered pool hands out only the output and the LSE, the driver nothing) and
// give the same bits.
std::string check_workspace(const Case& c, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Filled f;
  std::string why = fill(c, f, rng);
  if (!why.empty()) return why;
  const std::size_t rows = static_cast<std::size_t>(c.batch) * c.heads * c.m, n = rows * c.headDim;
  std::vector<std::uint16_t> q(n);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : q) x = encode(normal(rng), mma_of(c.type));
  DeviceArray<std::uint16_t> dq(q.size());
  dq.put(q);
  const DecodeRequest r = request_for(c, f, Buffer{dq.ptr, q.size() * 2, 0});
  Buffer workspace;
  std::vector<float> first;
  for (int step = 0; step < 3 && why.empty(); step++) {
    psa::emu::counters_enable(true);
    DecodeResult out;
    const Status s = run_decode(r, workspace, out);
    const psa::emu::HostCounters host = psa::emu::counters_take().host;
    psa::emu::counters_enable(false);
    if (!s.ok()) {
      why = "run_decode: " + s.message;
      break;
    }
    const std::vector<float> o = read32(out.output, n);
    free_buffer(out.output);
    free_buffer(out.lse);
    if (step == 0) {
      workspace = out.workspace;
      first = o;
      if (!workspace.ptr) why = "the first step left no workspace to keep";
    } else if (out.workspace.ptr) {
      free_buffer(out.workspace);
      why = "a step of the same shape grew the workspace again";
    } else if (host.handOuts != 2 || host.allocations != 0 || host.frees != 0) {
      why = "a steady step took " + std::to_string(host.handOuts) + " hand-outs, " + std::to_string(host.allocations) + " allocations, " + std::to_string(host.frees) + " frees (2, 0, 0 expected)";
    } else if (std::memcmp(o.data(), first.data(), n * sizeof(float)) != 0) {
      why = "a step on the kept workspace changed the output";
    }
  }
  free_buffer(workspace);
  return why;
}

std::string run_case(const Case& c, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Filled f;
  std::string why = fill(c, f, rng);
  if (!why.empty()) return why;
  if (!(why = check_pool(c, f)).empty()) return why;

  const int D = c.headDim, ps = c.pageSize, G = c.heads / c.kvHeads;
  const std::size_t rows = static_cast<std::size_t>(c.batch) * c.heads * c.m;
  std::vector<std::uint16_t> q(rows * D);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : q) x = encode(normal(rng), mma_of(c.type));
  DeviceArray<std::uint16_t> dq(q.size());
  dq.put(q);
  const DecodeRequest r = request_for(c, f, Buffer{dq.ptr, q.size() * 2, 0});
  DecodeResult out;
  const Status s = run_decode(r, Buffer{}, out);
  if (!s.ok()) return "run_decode: " + s.message;
  free_buffer(out.workspace);
  const std::vector<float> o = read32(out.output, rows * D), lse = read32(out.lse, rows);
  const std::vector<float> meta = read32(f.pool.meta, static_cast<std::size_t>(f.pool.pages) * c.kvHeads * 4 * D);
  free_buffer(out.output);
  free_buffer(out.lse);

  double worst = 0;
  for (int b = 0; b < c.batch; b++)
    for (int h = 0; h < c.heads; h++)
      for (int i = 0; i < c.m; i++) {
        const std::size_t row = (static_cast<std::size_t>(b) * c.heads + h) * c.m + i;
        const Row rk{c.lengths[b] - c.m + i};
        const int hk = h / G;
        const std::uint8_t* flags = &out.pageFlags[row * out.maxPages];
        // The attention over the keys the device's flags allow.
        std::vector<double> sc;
        std::vector<int> keys;
        for (int j = 0; j <= rk.pos; j++) {
          const std::uint8_t fl = flags[j / ps];
          if (!fl || (!(fl & 1) && !rk.inWindowOrSink(j, c))) continue;
          sc.push_back(score(c, f, q, row, b, hk, j));
          keys.push_back(j);
        }
        if (c.topK > 0 && static_cast<int>(sc.size()) > c.topK) {
          // The topK best scores (random inputs: no ties at the cut).
          std::vector<double> sorted = sc;
          std::nth_element(sorted.begin(), sorted.begin() + (c.topK - 1), sorted.end(), std::greater<double>());
          const double tau = sorted[c.topK - 1];
          std::vector<double> keptScores;
          std::vector<int> keptKeys;
          for (std::size_t e = 0; e < sc.size(); e++) {
            if (sc[e] >= tau) {
              keptScores.push_back(sc[e]);
              keptKeys.push_back(keys[e]);
            }
          }
          sc.swap(keptScores);
          keys.swap(keptKeys);
        }
        double mx = -kInf;
        for (double x : sc) mx = std::max(mx, x);
        double sum = 0;
        std::vector<double> acc(D, 0.0);
        for (std::size_t e = 0; e < sc.size(); e++) {
          const double w = std::exp(sc[e] - mx);
          sum += w;
          const int j = keys[e];
          const std::size_t at = ((static_cast<std::size_t>(f.pages[b][j / ps]) * c.kvHeads + hk) * ps + j % ps) * D;
          for (int d = 0; d < D; d++) acc[d] += w * widen(f.values[at + d], c.type);
        }
        const double wantLse = sc.empty() ? -kInf : mx + std::log(sum);
        if (sc.empty() ? lse[row] != -INFINITY : std::fabs(lse[row] - wantLse) > 1e-4 * (1 + std::fabs(wantLse))) {
          return "row " + std::to_string(row) + ": lse " + std::to_string(lse[row]) + ", want " + std::to_string(wantLse);
        }
        for (int d = 0; d < D; d++) worst = std::max(worst, std::fabs(o[row * D + d] - (sum > 0 ? acc[d] / sum : 0.0)));
        if (out.kept[row] != static_cast<int>(sc.size())) return "row " + std::to_string(row) + ": kept " + std::to_string(out.kept[row]) + ", want " + std::to_string(sc.size());
        // Candidates: pages with a causal key outside the window and the sinks.
        int candidates = 0, chosen = 0;
        for (int J = 0; J * ps <= rk.pos; J++) {
          bool cand = false;
          for (int j = J * ps; j <= std::min(rk.pos, J * ps + ps - 1); j++) cand = cand || !rk.inWindowOrSink(j, c);
          candidates += cand;
          chosen += cand && (flags[J] & 1);
        }
        if (c.choice == 1 && chosen != std::min(candidates, static_cast<int>(std::ceil(c.value * candidates - 1e-9 * c.value * candidates)))) return "row " + std::to_string(row) + ": ratio kept " + std::to_string(chosen) + " pages";
        if (c.choice == 2 && chosen != std::min(candidates, static_cast<int>(c.value))) return "row " + std::to_string(row) + ": topBlocks kept " + std::to_string(chosen) + " pages";
        if (c.choice == 3) {
          why = check_progressive(c, f, meta, q, row, b, hk, rk, flags);
          if (!why.empty()) return "row " + std::to_string(row) + ": " + why;
        }
      }
  if (worst > 2e-5) return "output off by " + std::to_string(worst);
  return "";
}

// The merge against a float64 merge: three parts, one empty for some rows, one row empty in all.
std::string run_merge_case(int rows, int D, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int parts = 3;
  std::vector<std::vector<float>> o(parts, std::vector<float>(static_cast<std::size_t>(rows) * D)), l(parts, std::vector<float>(rows));
  for (int p = 0; p < parts; p++) {
    for (auto& x : o[p]) x = normal(rng);
    for (int r = 0; r < rows; r++) l[p][r] = (r % 3 == p || r == rows - 1) ? -INFINITY : 10 * normal(rng);
  }
  std::vector<DeviceArray<float>*> devs;
  std::vector<Buffer> ob, lb;
  for (int p = 0; p < parts; p++) {
    auto* a = new DeviceArray<float>(o[p].size());
    auto* b = new DeviceArray<float>(rows);
    a->put(o[p]);
    b->put(l[p]);
    devs.push_back(a);
    devs.push_back(b);
    ob.push_back(Buffer{a->ptr, o[p].size() * 4, 0});
    lb.push_back(Buffer{b->ptr, static_cast<std::size_t>(rows) * 4, 0});
  }
  Buffer out, lse;
  const Status s = run_merge(ob, lb, rows, D, out, lse);
  for (auto* d : devs) delete d;
  if (!s.ok()) return "run_merge: " + s.message;
  const std::vector<float> go = read32(out, static_cast<std::size_t>(rows) * D), gl = read32(lse, rows);
  free_buffer(out);
  free_buffer(lse);
  for (int r = 0; r < rows; r++) {
    double mx = -kInf;
    for (int p = 0; p < parts; p++) mx = std::max(mx, static_cast<double>(l[p][r]));
    if (mx == -kInf) {
      if (gl[r] != -INFINITY) return "an empty row's lse is not -inf";
      for (int d = 0; d < D; d++) {
        if (go[static_cast<std::size_t>(r) * D + d] != 0.0f) return "an empty row's output is not 0";
      }
      continue;
    }
    double sum = 0;
    for (int p = 0; p < parts; p++) sum += std::exp(l[p][r] - mx);
    const double total = mx + std::log(sum);
    if (std::fabs(gl[r] - total) > 1e-5 * (1 + std::fabs(total))) return "row " + std::to_string(r) + ": lse off";
    for (int d = 0; d < D; d++) {
      double want = 0;
      for (int p = 0; p < parts; p++) want += std::exp(l[p][r] - total) * o[p][static_cast<std::size_t>(r) * D + d];
      if (std::fabs(go[static_cast<std::size_t>(r) * D + d] - want) > 1e-5 * (1 + std::fabs(want))) return "row " + std::to_string(r) + ": output off";
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(std::move(c)); };
  add({.name = "dense, one head, pages of 16"});
  add({.name = "dense, head dim 1, pages of 7", .headDim = 1, .pageSize = 7, .lengths = {30}});
  add({.name = "dense, bfloat16, GQA 4, two sequences", .type = DType::BF16, .batch = 2, .heads = 4, .kvHeads = 1, .lengths = {37, 5}});
  add({.name = "window 9 and 2 sinks, m 3", .heads = 2, .kvHeads = 2, .m = 3, .lengths = {50}, .windowLeft = 9, .windowRight = 0, .globalTokens = 2});
  add({.name = "GQA 8 packed into one tile, head dim 59, pages of 32", .heads = 8, .headDim = 59, .pageSize = 32, .lengths = {100}});
  add({.name = "ratio 0.4, moment, window 5", .heads = 2, .lengths = {90}, .windowLeft = 5, .windowRight = 0, .choice = 1, .value = 0.4});
  add({.name = "topBlocks 2, bound, sinks 3, m 2", .heads = 2, .m = 2, .lengths = {80}, .globalTokens = 3, .choice = 2, .value = 2, .estimate = 1});
  add({.name = "progressive 0.9, mean, shared over GQA 4", .heads = 4, .lengths = {120}, .windowLeft = 8, .windowRight = 0, .choice = 3, .value = 0.9, .estimate = 0, .share = true});
  add({.name = "top-k 11 over window, sinks and ratio 0.5 pages, m 2", .heads = 2, .m = 2, .lengths = {90}, .windowLeft = 6, .windowRight = 0, .globalTokens = 2, .choice = 1, .value = 0.5, .topK = 11});
  if (!quick) {
    add({.name = "dense, head dim 256, pages of 64, m 5", .heads = 2, .m = 5, .headDim = 256, .pageSize = 64, .lengths = {150}});
    add({.name = "progressive 0.95, moment, bfloat16, m 4, GQA 2", .type = DType::BF16, .batch = 2, .heads = 4, .kvHeads = 2, .m = 4, .headDim = 33, .lengths = {200, 64}, .windowLeft = 16, .windowRight = 0, .globalTokens = 1, .choice = 3, .value = 0.95});
    // Long walks: 'bound' reads past the first round (the estimates predict too early a stop:
    // doubled rounds follow), 'mean' predicts too late a stop (a first round past the prefix).
    add({.name = "progressive 0.9, bound, 300 pages of 8: rounds past the first", .heads = 2, .pageSize = 8, .lengths = {2400}, .choice = 3, .value = 0.9, .estimate = 1});
    add({.name = "progressive 0.95, mean, 150 pages of 8, shared over GQA 2", .heads = 2, .pageSize = 8, .lengths = {1200}, .choice = 3, .value = 0.95, .estimate = 0, .share = true});
  }
  std::uint32_t seed = 1;
  for (const Case& c : cases) {
    const std::string why = run_case(c, seed++);
    report(c.name, why.empty(), why);
  }
  {
    const Case c{.name = "steps on one workspace", .batch = 2, .heads = 4, .kvHeads = 2, .lengths = {90, 40}, .choice = 3, .value = 0.9, .topK = 7};
    const std::string why = check_workspace(c, seed++);
    report("steps on one workspace: progressive 0.9 with top-k, two sequences", why.empty(), why);
  }
  for (int D : {1, 37, 128}) {
    const std::string why = run_merge_case(21, D, seed++);
    report("merge of three parts, head dim " + std::to_string(D), why.empty(), why);
  }
  std::printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
