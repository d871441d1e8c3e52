// The key tiles one query tile visits, in order, for the forward and the top-k kernels alike:
// the top-k thresholds rank exactly the scores the forward masks and compares, so both must
// visit the same tiles with the same flags.
//
// With a layout (CSR, row (b * heads + h) * numQueryBlocks + I for query block I = m0 /
// blockSize), entry J of a blockSize layout stands for the kBlockN-key tiles J * perEntry + 0 ..
// perEntry - 1 (perEntry = blockSize / kBlockN), all with the entry's flags; tiles starting at or
// past seqK hold no key and are not visited (entries ascend, so only the last entry has any).
// Without a layout: every causally reachable tile, selected, full where every (row, key) of it
// is allowed. Causal walks end at the query tile's last row either way.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "params.h"

namespace psa::gpu {

struct KeyTile {
  int index;         // keys index * kBlockN ..
  bool elementMask;  // some (row, key) of the tile may be masked: apply element_mask.cuh per element
  bool selected;     // chosen by selection (window and sinks do not restrict it)
};

template <typename Tile, bool Causal>
struct KeyTileWalk {
  static constexpr int kN = Tile::kBlockN;
  const ForwardParams& p;
  int m0;        // the query tile's first row
  bool dense;    // no layout
  int perEntry;  // key tiles per layout entry
  int entry0;    // the row's first layout entry
  int total;     // tiles to visit

  __device__ __forceinline__ KeyTileWalk(const ForwardParams& params, int b, int h, int firstRow)
      : p(params), m0(firstRow), dense(params.layoutOffsets == nullptr), perEntry(dense ? 1 : params.blockSize / kN), entry0(0), total(0) {
    const Shape& s = p.shape;
    const int keyTiles = (s.seqK + kN - 1) / kN;
    if (dense) {
      int last = keyTiles - 1;
      if (Causal) {
        const int lastPos = (m0 + Tile::kBlockM < s.seqQ ? m0 + Tile::kBlockM : s.seqQ) - 1 + s.seqK - s.seqQ;  // of the tile's last valid row
        last = lastPos < 0 ? -1 : (last < lastPos / kN ? last : lastPos / kN);
      }
      total = last + 1;
      return;
    }
    const int numQueryBlocks = (s.seqQ + p.blockSize - 1) / p.blockSize;
    const int row = (b * s.heads + h) * numQueryBlocks + m0 / p.blockSize;
    entry0 = p.layoutOffsets[row];
    const int count = p.layoutOffsets[row + 1] - entry0;
    if (count > 0) {
      const int inLast = keyTiles - static_cast<int>(p.layoutIndices[entry0 + count - 1]) * perEntry;  // tiles of the last entry below seqK
      total = (count - 1) * perEntry + (inLast < 0 ? 0 : inLast < perEntry ? inLast : perEntry);
    }
    if (Causal) {
      // An entry of blockSize > kN keys on the diagonal holds tiles that start past the query
      // tile's last row: no key of them is allowed to any of its rows. They form a suffix of
      // the walk (at most perEntry - 1 tiles).
      const int lastPos = (m0 + Tile::kBlockM < s.seqQ ? m0 + Tile::kBlockM : s.seqQ) - 1 + s.seqK - s.seqQ;
      while (total > 0 && tile(total - 1) * kN > lastPos) --total;
    }
  }

  __device__ __forceinline__ int tile(int n) const { return dense ? n : static_cast<int>(p.layoutIndices[entry0 + n / perEntry]) * perEntry + n % perEntry; }

  __device__ __forceinline__ KeyTile at(int n) const {
    KeyTile t;
    t.index = tile(n);
    const int end = (t.index + 1) * kN;  // one past the tile's last key
    unsigned flags = kBlockSelected;
    if (!dense) {
      flags = p.layoutFlags[entry0 + n / perEntry];
    } else if (end <= p.shape.seqK && (!Causal || end - 1 <= m0 + p.shape.seqK - p.shape.seqQ)) {
      flags |= kBlockFull;
    }
    t.elementMask = !(flags & kBlockFull) || end > p.shape.seqK;
    t.selected = (flags & kBlockSelected) != 0;
    return t;
  }
};

}  // namespace psa::gpu
