// What the decode kernels read and write (docs/decode.md): the page pool of a KvCache, the
// queries of one step, the resolved options, and the per-row and per-split buffers between the
// kernels. Plain structs, built by decode.cu from a DecodeRequest.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"

namespace psa::gpu::decode {

// The pool: keys and values [page][kvHead][slot][headDim] in 16 bits (float16 or bfloat16),
// metadata float32 [page][kvHead][4][headDim]: per channel min, max, sum, sum of squares of the
// page's keys (kMetaMin.. below).
struct PoolView {
  const std::uint16_t* keys = nullptr;
  const std::uint16_t* values = nullptr;
  const float* meta = nullptr;
  int kvHeads = 0, pageSize = 0, headDim = 0;
};

enum MetaField : int { kMetaMin = 0, kMetaMax = 1, kMetaSum = 2, kMetaSumSq = 3, kMetaFields = 4 };

// Page choice per row (the values of BlockChoice in attention_api.h) and the page estimates.
enum class Choice : int { None = 0, Ratio = 1, TopBlocks = 2, Progressive = 3 };
enum class Estimate : int { Mean = 0, Bound = 1, Moment = 2 };

// Bits of a row's page flag: the whole page is attended to (dense, or chosen by the selection),
// or only the keys the window and the sinks reach.
enum PageFlag : std::uint8_t { kPageWhole = 1, kPageWindowOrSink = 2 };

struct StepParams {
  PoolView pool;
  const std::uint16_t* q = nullptr;  // [batch][heads][m][headDim], the pool's element type
  int batch = 0, heads = 0, m = 0;
  const std::int32_t* pageTable = nullptr;  // [batch][tableStride]: the pool pages of q's sequences, in order
  int tableStride = 0;
  const std::int32_t* lengths = nullptr;  // [batch]: tokens held by each of q's sequences
  int maxPages = 0;                       // pages of the longest sequence
  float scale = 0;
  int windowLeft = -1, windowRight = -1;  // -1: no window
  int globalTokens = 0;
  bool sparse = false;  // a window, sinks or a selection: otherwise every causal key is attended to

  Choice choice = Choice::None;
  double choiceValue = 0;
  int minBlocks = 0, maxBlocks = 0x7fffffff;
  Estimate estimate = Estimate::Moment;
  bool shareAcrossGroup = false;

  int topK = 0;          // > 0: keep the topK best scores of a row
  double topKRatio = 0;  // else > 0: ceil(ratio * allowed), at least 1
  int polyDegree = 0;    // 0: exact exp
  float polyCoefficients[9] = {};

  // Between the kernels.
  std::uint8_t* pageFlags = nullptr;  // [rows][maxPages], PageFlag bits
  float* dropped = nullptr;           // [rows]: R / (Z + R) of the kept pages
  std::int32_t* visited = nullptr;    // [rows]: pages holding a key the row attends to
  float* estimates = nullptr;         // [rows][maxPages]: each row's page estimates, by page of its sequence (a selection)
  float* masses = nullptr;            // [units][group][maxPages]: exact log mass per ordered page (progressive)
  std::int32_t* order = nullptr;      // [units][maxPages]: candidate pages by estimate
  const float* thresholds = nullptr;  // [rows]: top-k threshold (-inf: keep all), or null
  int splits = 1, pagesPerSplit = 1;
  float* partOutput = nullptr;  // [splits][rows][headDim]
  float* partLse = nullptr;     // [splits][rows]
  std::int32_t* partKept = nullptr;  // [splits][rows]: kept keys

  __host__ __device__ int group() const { return heads / pool.kvHeads; }
  __host__ __device__ long long rows() const { return static_cast<long long>(batch) * heads * m; }
};

// One append: n tokens to each of `sequences` sequences, from k and v [sequences][kvHeads][n][headDim].
struct AppendParams {
  std::uint16_t* keys = nullptr;
  std::uint16_t* values = nullptr;
  float* meta = nullptr;
  int kvHeads = 0, pageSize = 0, headDim = 0;
  const void* k = nullptr;
  const void* v = nullptr;
  int sequences = 0, n = 0;
  const std::int32_t* slots = nullptr;       // [sequences][n]: page * pageSize + slot of each token
  const std::int32_t* touched = nullptr;     // pages written, each once
  const std::int32_t* touchedKeys = nullptr; // valid keys of each after the append
  int touchedCount = 0;
};

}  // namespace psa::gpu::decode
