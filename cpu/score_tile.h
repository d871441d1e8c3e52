// One score tile: query rows against one key block, as the forward and the backward both
// compute it (the backward must see the forward's scores bit for bit, or its kept sets and row
// maxima would not be the forward's): scale · Q Kᵀ by the kernel set, -inf past the last key
// and wherever the element mask forbids the pair.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels.h"
#include "mask.h"
#include "problem.h"

namespace psa::cpu {

// Rows [i0, i0 + rows) of q (qPitch apart; paddedRows = rows rounded up to kRowStep are read)
// against key block kt (Kᵀ of keys j0.., blockSize floats per channel) into tile (pitch apart).
// Rows past `rows` hold junk.
inline void scoreTile(const Problem& p, const Kernels& kernels, const float* q, int qPitch, int i0, int rows, int paddedRows, const float* kt,
                      int blockSize, int j0, std::uint8_t flags, float* tile, int pitch) {
  const int cols = std::min(p.seqK, j0 + blockSize) - j0;
  kernels.scores(q, qPitch, kt, blockSize, p.headDim, paddedRows, blockSize, static_cast<float>(p.scale), tile, pitch);
  if (cols < blockSize) {
    for (int ii = 0; ii < rows; ii++) std::fill(tile + ii * pitch + cols, tile + ii * pitch + blockSize, -std::numeric_limits<float>::infinity());
  }
  if (!(flags & kBlockFull)) maskTile(p.mask, tile, pitch, i0, rows, j0, j0 + cols - 1, (flags & kBlockSelected) != 0);
}

}  // namespace psa::cpu
