// The attention entry points of the CUDA layer, as the addon sees them: plain C++ types, no CUDA
// headers. One request runs the whole call on the device: input conversion to the Tensor Core
// element type, the block layout (uploaded, or selected on the device), the top-k thresholds,
// and the fused forward. Implemented by attention/run.cu (CUDA or emulated build) and by
// device_api_none.cc (a build without CUDA).
#pragma once

#include <climits>
#include <cstdint>
#include <vector>

#include "device_api.h"

namespace psa::gpu {

// Block selection modes (the values of SelectMode in attention/select.h).
enum class BlockChoice : int { None = 0, Ratio = 1, TopBlocks = 2, Progressive = 3 };

// One call, with every option already resolved and validated by lib/problem.ts.
struct AttentionRequest {
  Buffer q, k, v;  // device buffers (the caller keeps them alive for the call)
  DType qType = DType::F32, kType = DType::F32, vType = DType::F32;
  DType compute = DType::F16;  // F16 or BF16: the element type of the Tensor Core products

  int batch = 0, heads = 0, kvHeads = 0, seqQ = 0, seqK = 0, headDim = 0;
  bool bnhd = false;  // memory layout [B, N, H, D] instead of [B, H, N, D]
  float scale = 0;
  bool causal = false;
  int windowLeft = -1, windowRight = -1, globalTokens = 0;
  int blockSize = 64;

  // Sparse structure: a layout given by the caller (CSR, as lib/layout.ts), else the selection
  // below on top of window and sinks; `sparse` false means dense.
  bool sparse = false;
  bool hasLayout = false;
  std::vector<std::int32_t> layoutOffsets, layoutIndices;
  std::vector<std::uint8_t> layoutFlags;
  BlockChoice choice = BlockChoice::None;
  double choiceValue = 0;
  int minBlocks = 0, maxBlocks = INT_MAX;
  bool boundEstimate = false, momentEstimate = false, shareAcrossGroup = false;

  // Top-k per row: topK > 0 (count), or topKRatio > 0; neither: no top-k.
  int topK = 0;
  double topKRatio = 0;

  // Softmax: polyDegree 0 = exact exp; else the polynomial's coefficients, c0 first.
  int polyDegree = 0;
  float polyCoefficients[9] = {};

  bool returnLse = false, returnThresholds = false;
};

// What a call produced. Buffers are owned by the caller once run_attention succeeds.
struct AttentionResult {
  Buffer output;      // float32, the layout and shape of q
  Buffer lse;         // float32 [B, H, Nq] when asked
  Buffer thresholds;  // float32 [B, H, Nq] when asked (-inf: the row keeps every allowed key)
  // The layout computed on the device (sparse calls without a given layout).
  std::vector<std::int32_t> offsets, indices;
  std::vector<std::uint8_t> flags;
  double keptPairs = 0;     // kept (query, key) pairs, summed over rows
  double emptyRows = 0;     // rows with no kept key
  long long tilesVisited = 0;  // layout entries (dense: causally reachable blocks)
};

// Runs the call; on failure nothing is left allocated and `out` is unchanged.
Status run_attention(const AttentionRequest& request, AttentionResult& out);

// The layout the call would use (selection on the device), without the attention.
Status build_layout(const AttentionRequest& request, std::vector<std::int32_t>& offsets, std::vector<std::int32_t>& indices,
                    std::vector<std::uint8_t>& flags);

}  // namespace psa::gpu
