// Parameters of the fused sparse attention forward kernel (forward_kernel.cuh) and of the top-k
// threshold kernel (topk_kernel.cuh), FlashAttention-2 style: one plain struct, passed by value.
// Everything a launch needs, nothing it computes. The shape, strides and mask are the parts it
// shares with block selection's SelectParams (shape.h).
#pragma once

#include <cstdint>

#include "shape.h"

namespace psa::gpu {

// Bits of ForwardParams::layoutFlags (the same values as the library's BlockLayout flags).
constexpr std::uint8_t kBlockSelected = 1;  // chosen by selection: every causally allowed key of the block is allowed
constexpr std::uint8_t kBlockFull = 2;      // every valid (row, key) of the tile is allowed: no element mask

struct ForwardParams {
  // Inputs: 16-bit elements (bfloat16 or float16 bits, by the MmaType given to the launcher).
  const std::uint16_t* q = nullptr;  // [batch, heads, seqQ, headDim] (bhnd) or [batch, seqQ, heads, headDim] (bnhd)
  const std::uint16_t* k = nullptr;  // the same with kvHeads and seqK
  const std::uint16_t* v = nullptr;
  float* o = nullptr;                // output, float32, strides oStrides
  float* lse = nullptr;              // optional [batch, heads, seqQ], natural log; nullptr: not written
  Strides qStrides, kStrides, vStrides, oStrides;

  Shape shape;     // headDim 1..256 (64, 128 and 256 instantiations, zero-padded)
  float scale = 0; // s_ij = scale * dot(q_i, k_j); any finite value
  MaskSpec mask;

  // Block layout (CSR), device pointers; row r = (b * heads + h) * numQueryBlocks + I.
  // layoutOffsets == nullptr: dense (every causally allowed key block, treated as selected).
  int blockSize = 64;  // a multiple of 64 up to 256 (each entry: blockSize / 64 key tiles of the kernel)
  const std::int32_t* layoutOffsets = nullptr;
  const std::int32_t* layoutIndices = nullptr;  // ascending key blocks per row
  const std::uint8_t* layoutFlags = nullptr;    // kBlockSelected | kBlockFull per entry

  // Softmax exponential: polyDegree 0 = exact (exp2f); 1..8 = E(x) = exp2_poly(x * log2 e)
  // (exp2_poly.cuh), 2^f ~ polyCoefficients[0] + polyCoefficients[1] f + ... (c0 first).
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
