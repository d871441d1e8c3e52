// The parts every kernel's parameters share: the problem's shape, the element strides of its
// tensors and the token mask. Built once per call from the request (run.cu) and by the check
// programs with the same functions. Contract: docs/contract.md#shapes-and-positions and
// docs/contract.md#allowed-keys.
#pragma once

#include "../cuda_compat.h"

namespace psa::gpu {

struct Shape {
  int batch = 0, heads = 0, kvHeads = 0;  // heads % kvHeads == 0; head h reads kv head h / (heads / kvHeads)
  int seqQ = 0, seqK = 0;                 // query i sits at key position i + seqK - seqQ (bottom-right)
  int headDim = 0;
};

// Distances in elements between consecutive tokens (row), heads and batches of one tensor.
struct Strides {
  long long row = 0, head = 0, batch = 0;
};

// [batch, heads, seq, headDim] (bhnd) or [batch, seq, heads, headDim] (bnhd), dense.
inline Strides strides_of(bool bnhd, int heads, int seq, int headDim) {
  const long long D = headDim;
  Strides s;
  s.row = bnhd ? heads * D : D;
  s.head = bnhd ? D : seq * D;
  s.batch = static_cast<long long>(heads) * seq * D;
  return s;
}

// Element offset of token n of head h of batch b (its channel 0).
__host__ __device__ inline long long offset_of(const Strides& s, long long b, long long h, long long n) { return b * s.batch + h * s.head + n * s.row; }

// Which keys a query row may see besides the selected blocks: causal, the window
// [p - windowLeft, p + windowRight] around its position p (-1, -1: no window) and the sinks.
// Windows may be as wide as 2^31 - 1: positions plus or minus them need 64 bits (element_mask.cuh).
struct MaskSpec {
  bool causal = false;
  int windowLeft = -1, windowRight = -1;
  int globalTokens = 0;  // sinks: keys j < globalTokens
};

}  // namespace psa::gpu
