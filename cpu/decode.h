// Decode against a paged host cache (docs/decode.md): per query row, the cache pages ordered by
// an estimate from the page metadata and kept by ratio, count or PSA's progressive rule on the
// exact visited mass, then attention over the window, the sinks and the kept pages. The port of
// lib/reference/decode.ts: selection in float64 in the reference's order (this file is
// compiled without fused multiply-adds), so the kept pages are the reference's; scores and
// sums in float64 too (a decode step reads each kept key once: it is bound by memory, not
// arithmetic), the output rounded to float32.
#pragma once

#include <cstdint>
#include <vector>

namespace psa::cpu {

// The cache's host storage: pages of [kvHeads][pageSize][headDim] floats, metadata per
// (page, kv head) of headDim doubles (lib/kv-cache.ts).
struct PagedCache {
  const float* keys = nullptr;
  const float* values = nullptr;
  const double* kMin = nullptr;
  const double* kMax = nullptr;
  const double* kSum = nullptr;
  const double* kSumSq = nullptr;
  int kvHeads = 0;
  int pageSize = 0;
  int headDim = 0;
};

enum class PageEstimate { Mean, Bound, Moment };
enum class PageRule { None, Ratio, TopBlocks, Progressive };
enum class DecodeTopK { None, Count, Ratio };

struct DecodeProblem {
  int heads = 0;
  int kvHeads = 0;
  int m = 0;  // query tokens per sequence (its newest m)
  int headDim = 0;
  double scale = 1;
  std::vector<float> polyCoefficients;  // empty: exp
  long long windowLeft = -1, windowRight = -1;  // -1: no window
  long long globalTokens = 0;
  PageRule rule = PageRule::None;
  double ruleValue = 0;
  long long minPages = 0, maxPages = 0;
  PageEstimate estimate = PageEstimate::Mean;
  bool shareAcrossGroup = false;
  DecodeTopK topK = DecodeTopK::None;
  long long topKCount = 0;
  double topKRatio = 0;
  // Per batch row of q: the sequence's length and its page table (pool page of each page).
  std::vector<int> lengths;
  std::vector<const std::int32_t*> pageTables;
  // Per batch row: the metadata of its last page as it was when the step began, [min, max, sum,
  // sumSq][kvHeads][headDim] (empty when that page is full). An append to the sequence while the
  // step runs writes that page's later slots and its metadata in the pool; the step reads this
  // copy instead, so what it computes is the cache at the call.
  std::vector<std::vector<double>> lastPageMeta;
};

struct DecodeResult {
  float* output = nullptr;  // [rows, headDim], rows = batch * heads * m
  float* lse = nullptr;     // [rows] or null
  bool wantPages = false;
  std::vector<std::vector<std::int32_t>> pages;  // with wantPages: per row, the pages it read, ascending
  long long keptPairs = 0, allowedPairs = 0, pagesVisited = 0, pagesDense = 0, pagesRead = 0, pagesReadDense = 0, emptyRows = 0;
  double droppedMax = 0, droppedMean = 0;
};

// Work is split over (batch row, kv head) on the shared pool; each item computes the same
// whatever thread runs it, and the statistics are reduced in item order afterwards.
void decode(const DecodeProblem& p, const float* q, const PagedCache& cache, DecodeResult& result, int threads);

}  // namespace psa::cpu
