// Parameters of the fused sparse attention forward kernel (forward_kernel.cuh), FlashAttention-2
// style: one plain struct, passed by value to the kernel. Everything a launch needs, nothing
// it computes. Contract: DESIGN.md §2; token mask: docs/semantics.md and lib/mask.ts.
#pragma once

#include <cstdint>

namespace psa::gpu {

// Bits of ForwardParams::layoutFlags (the same values as lib/layout.ts).
constexpr std::uint8_t kBlockSelected = 1;  // chosen by selection: every causally allowed key of the block is allowed
constexpr std::uint8_t kBlockFull = 2;      // every valid (row, key) of the tile is allowed: no element mask

struct ForwardParams {
  // Inputs: 16-bit elements (bfloat16 or float16 bits, by the MmaType given to the launcher).
  const std::uint16_t* q = nullptr;  // [batch, heads, seqQ, headDim] (bhnd) or [batch, seqQ, heads, headDim] (bnhd)
  const std::uint16_t* k = nullptr;  // the same with kvHeads and seqK
  const std::uint16_t* v = nullptr;
  float* o = nullptr;                // output, float32, strides oRowStride/oHeadStride/oBatchStride
  float* lse = nullptr;              // optional [batch, heads, seqQ], natural log; nullptr: not written

  // Strides in elements: between consecutive tokens (row), heads, batches.
  // bhnd: row = D, head = N * D, batch = H * N * D;  bnhd: row = H * D, head = D, batch = N * H * D.
  long long qRowStride = 0, qHeadStride = 0, qBatchStride = 0;
  long long kRowStride = 0, kHeadStride = 0, kBatchStride = 0;
  long long vRowStride = 0, vHeadStride = 0, vBatchStride = 0;
  long long oRowStride = 0, oHeadStride = 0, oBatchStride = 0;

  int batch = 0, heads = 0, kvHeads = 0;  // heads % kvHeads == 0; head h reads kv head h / (heads / kvHeads)
  int seqQ = 0, seqK = 0;                 // query i sits at key position i + seqK - seqQ (bottom-right)
  int headDim = 0;                        // 1..256 (64, 128 and 256 instantiations, zero-padded)
  float scale = 0;                        // s_ij = scale * dot(q_i, k_j); any finite value

  bool causal = false;
  int windowLeft = -1, windowRight = -1;  // -1: no window
  int globalTokens = 0;                   // sinks: keys j < globalTokens

  // Block layout (CSR), device pointers; row r = (b * heads + h) * numQueryBlocks + I.
  // layoutOffsets == nullptr: dense (every causally allowed key block, treated as selected).
  int blockSize = 64;  // a multiple of 64 up to 256 (each entry: blockSize / 64 key tiles of the kernel)
  const std::int32_t* layoutOffsets = nullptr;
  const std::int32_t* layoutIndices = nullptr;  // ascending key blocks per row
  const std::uint8_t* layoutFlags = nullptr;    // kBlockSelected | kBlockFull per entry

  // Softmax exponential: polyDegree 0 = exact (exp2f); 1..8 = E(x) = exp2poly(x * log2 e),
  // 2^f ~ polyCoefficients[0] + polyCoefficients[1] f + ... (c0 first), Horner in float32.
  int polyDegree = 0;
  float polyCoefficients[9] = {};

  // Optional per-row top-k threshold [batch, heads, seqQ]: keys with s_ij < tau_i are dropped
  // (ties kept; -inf keeps everything). nullptr: no top-k.
  const float* threshold = nullptr;

  // Optional per-row count of kept keys [batch, heads, seqQ] (int32): the stats of a call
  // (kept pairs, empty rows) without a second pass. nullptr: not written.
  int* keptCounts = nullptr;
};

}  // namespace psa::gpu
