// Block selection (docs/contract.md#block-selection), the same float64 arithmetic in the same
// order as lib/reference/select.ts, so layouts come out bit-identical to the reference's.
#pragma once

#include "problem.h"

namespace psa::cpu {

enum class SelectionMode { Ratio, TopBlocks, Progressive };
enum class Estimate { Mean, Bound, Moment };

struct Selection {
  SelectionMode mode = SelectionMode::Ratio;
  double value = 0.0;
  int minBlocks = 0;
  int maxBlocks = 0x7fffffff;
  Estimate estimate = Estimate::Mean;
  bool shareAcrossGroup = false;
};

// The full layout (window, sinks and the selected blocks) of a problem with a selection: key
// blocks of blockSize keys ranked for each query block of queryBlockSize rows.
BlockLayout selectBlocks(const Problem& p, int blockSize, int queryBlockSize, const Selection& sel, const float* q, const float* k, int threads);
inline BlockLayout selectBlocks(const Problem& p, int blockSize, const Selection& sel, const float* q, const float* k, int threads) {
  return selectBlocks(p, blockSize, blockSize, sel, q, k, threads);
}

}  // namespace psa::cpu
