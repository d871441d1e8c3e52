// The attention problem as the CPU kernels take it: shapes, the token mask, softmax and top-k
// options, and a block layout in the CSR form of lib/layout.ts. Plain data, resolved and
// checked by the caller; rules in docs/contract.md#allowed-keys and #top-k-thresholds.
#pragma once

#include <cstdint>
#include <vector>

namespace psa::cpu {

// Layout entry flags, as in lib/layout.ts.
inline constexpr std::uint8_t kBlockSelected = 1;  // every causally allowed key of the block is allowed
inline constexpr std::uint8_t kBlockFull = 2;      // every (row, key) of the tile is allowed

struct MaskSpec {
  int seqQ = 0;
  int seqK = 0;
  bool causal = false;
  int windowLeft = -1;  // -1: no window
  int windowRight = -1;
  int globalTokens = 0;
};

// Key blocks visited per (batch, query head, query block): row r = (b * heads + h) * numQueryBlocks + I,
// query block I being rows [I * queryBlockSize, (I + 1) * queryBlockSize).
struct BlockLayout {
  int blockSize = 64;      // keys per key block
  int queryBlockSize = 0;  // queries per query block, 1..256; 0: blockSize (queryRows() resolves it)
  std::vector<std::int32_t> offsets;
  std::vector<std::int32_t> indices;
  std::vector<std::uint8_t> flags;
  int queryRows() const { return queryBlockSize > 0 ? queryBlockSize : blockSize; }
};

enum class TopKKind { None, Count, Ratio };

struct Problem {
  int batch = 1;
  int heads = 1;
  int kvHeads = 1;
  int seqQ = 1;
  int seqK = 1;
  int headDim = 1;
  bool bnhd = false;  // [batch, seq, heads, headDim] instead of [batch, heads, seq, headDim]
  double scale = 1.0;  // scores use it rounded to float32; block estimates in full
  MaskSpec mask;
  // Softmax: exp when empty, else the polynomial exp2 with these coefficients, c0 first.
  std::vector<float> polyCoefficients;
  TopKKind topK = TopKKind::None;
  int topKCount = 0;
  double topKRatio = 0.0;

  int numQueryBlocks(int blockSize) const { return (seqQ + blockSize - 1) / blockSize; }
  int numKeyBlocks(int blockSize) const { return (seqK + blockSize - 1) / blockSize; }
  // Element offset of row n of head h in batch b, and the distance between rows.
  std::int64_t rowBase(int b, int h, int numHeads, int seq, int n) const {
    return bnhd ? ((static_cast<std::int64_t>(b) * seq + n) * numHeads + h) * headDim
                : ((static_cast<std::int64_t>(b) * numHeads + h) * seq + n) * headDim;
  }
};

// Where the forward writes; lse and thresholds may be null ([batch, heads, seqQ] otherwise).
struct ForwardResult {
  float* output = nullptr;
  float* lse = nullptr;
  float* thresholds = nullptr;
  std::int64_t keptPairs = 0;
  std::int64_t emptyRows = 0;
};

}  // namespace psa::cpu
