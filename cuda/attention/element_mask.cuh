// The one element-allowed rule of the forward and top-k kernels (docs/contract.md#allowed-keys):
// key j is allowed for the query at position p when j < seqK, j <= p if causal, and the tile is
// selected, or j lies in the window [p - left, p + right], or j is a sink. Both kernels apply it
// to the same tiles (key_tiles.cuh), so the top-k thresholds count exactly the keys the forward
// keeps. The window ends are computed in 64 bits and clamped into the keys once per row:
// positions and windows are each below 2^31, their sum is not.
#pragma once

#include "../cuda_compat.h"
#include "shape.h"

namespace psa::gpu {

// The keys one row may see, clamped to [0, seqK): j <= last, the window [windowLo, windowHi]
// (empty when windowLo > windowHi), the sinks j < sinks.
struct RowKeys {
  int last;
  int windowLo, windowHi;
  int sinks;
};

__host__ __device__ inline long long clamp_ll(long long x, long long lo, long long hi) { return x < lo ? lo : x > hi ? hi : x; }

// pos: the row's key position, i + seqK - seqQ (in [-seqQ, seqK)).
__host__ __device__ inline RowKeys row_keys(const MaskSpec& m, bool causal, int seqK, long long pos) {
  const long long lastKey = static_cast<long long>(seqK) - 1;
  RowKeys r;
  r.last = static_cast<int>(causal ? clamp_ll(pos, -1, lastKey) : lastKey);
  r.windowLo = 0;
  r.windowHi = -1;
  if (m.windowLeft >= 0) {
    r.windowLo = static_cast<int>(clamp_ll(pos - m.windowLeft, 0, seqK));
    r.windowHi = static_cast<int>(clamp_ll(pos + m.windowRight, -1, lastKey));
  }
  r.sinks = m.globalTokens;
  return r;
}

// selected: the key's tile is one the layout chose (every causally allowed key of it is allowed).
__host__ __device__ inline bool key_allowed(const RowKeys& r, int j, bool selected) {
  return j <= r.last && (selected || (j >= r.windowLo && j <= r.windowHi) || j < r.sinks);
}

// Key j for the row at position pos: the form the kernels call per element. The compiler shares
// row_keys between the elements of a row; RowKeys held in an array across a tile instead cost
// the forward kernel about 25 registers at d 128.
__host__ __device__ inline bool element_allowed(const MaskSpec& m, bool causal, int seqK, long long pos, int j, bool selected) {
  return key_allowed(row_keys(m, causal, seqK, pos), j, selected);
}

}  // namespace psa::gpu
