// The decode entry points of the CUDA layer, as the addon sees them (plain C++ types, no CUDA
// headers): appending to a KvCache's page pool, one decode step against it, and the LSE merge
// of partial results. Implemented by decode.cu (CUDA or emulated build) and decode_none.cc (a
// build without CUDA).
#pragma once

#include <cstdint>
#include <vector>

#include "../device_api.h"

namespace psa::gpu {

// The pool of a KvCache: keys and values [pages][kvHeads][pageSize][headDim] of `type`
// (float16 or bfloat16), metadata float32 [pages][kvHeads][4][headDim].
struct PoolBuffers {
  Buffer keys, values, meta;
  DType type = DType::F16;
  int pages = 0, kvHeads = 0, pageSize = 0, headDim = 0;
};

// Allocates a pool; on failure nothing stays allocated.
Status alloc_pool(PoolBuffers& pool);
void free_pool(PoolBuffers& pool);

// n tokens to each of `sequences` sequences: k and v [sequences][kvHeads][n][headDim] of
// kType (float32, float16 or bfloat16), rounded once to the pool's type. slots[s * n + t] is
// page * pageSize + slot; `touched` the pages written and `touchedKeys` their valid keys after.
struct AppendRequest {
  PoolBuffers pool;
  Buffer k, v;
  DType kType = DType::F32;
  int sequences = 0, n = 0;
  std::vector<std::int32_t> slots, touched, touchedKeys;
};
Status run_append(const AppendRequest& request);

// One decode step (docs/decode.md), every option resolved by lib/decode.ts.
struct DecodeRequest {
  PoolBuffers pool;
  Buffer q;
  DType qType = DType::F32;  // float32, or the pool's type
  int batch = 0, heads = 0, m = 0;
  std::vector<std::int32_t> pageTable;  // [batch][tableStride]
  int tableStride = 0;
  std::vector<std::int32_t> lengths;  // [batch]
  float scale = 0;
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  bool sparse = false;
  int choice = 0;  // BlockChoice
  double choiceValue = 0;
  int minBlocks = 0, maxBlocks = 0x7fffffff;
  int estimate = 2;  // 0 mean, 1 bound, 2 moment
  bool shareAcrossGroup = false;
  int topK = 0;          // > 0: keep each row's topK best scores
  double topKRatio = 0;  // else > 0: ceil(ratio * allowed keys), at least 1
  int polyDegree = 0;
  float polyCoefficients[9] = {};
  bool returnLse = false, returnPages = false;
};

struct DecodeResult {
  Buffer workspace;  // a larger step workspace when the one handed in was too small (else none)
  Buffer output;  // float32 [batch][heads][m][headDim]
  Buffer lse;     // float32 [batch][heads][m] when asked
  std::vector<std::int32_t> kept, visited;  // per row
  std::vector<float> dropped;               // per row
  long long pagesRead = 0;
  std::vector<std::uint8_t> pageFlags;  // [rows][maxPages] when returnPages
  int maxPages = 0;
};
// Runs the step; the host waits once, for the result. Its temporaries are carved from
// `workspace` (the cache's, at fixed addresses): when that is smaller than a step of this
// shape needs with its pages rounded up to a power of two, one larger workspace is allocated
// and handed back in out.workspace for the cache to keep (a growing sequence regrows it at
// each doubling, not each page). The caller runs one step at a time on a workspace. On
// failure nothing stays allocated.
Status run_decode(const DecodeRequest& request, const Buffer& workspace, DecodeResult& out);

// mergeAttention on device tensors: float32 outputs [rows][headDim] and lses [rows].
Status run_merge(const std::vector<Buffer>& outputs, const std::vector<Buffer>& lses, long long rows, int headDim, Buffer& output, Buffer& lse);

}  // namespace psa::gpu
