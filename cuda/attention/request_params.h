// The part of ForwardParams an AttentionRequest fixes whoever launches the forward (the forward
// itself, the backward's recompute): geometry, scale, mask, block size, polynomial. Pointers and
// strides stay the caller's, since they depend on how it laid its inputs out.
#pragma once

#include <cstring>

#include "../attention_api.h"
#include "params.h"

namespace psa::gpu {

inline void set_problem(ForwardParams& f, const AttentionRequest& r) {
  f.shape = Shape{r.batch, r.heads, r.kvHeads, r.seqQ, r.seqK, r.headDim};
  f.scale = r.scale;
  f.mask = MaskSpec{r.causal, r.windowLeft, r.windowRight, r.globalTokens};
  f.blockSize = r.blockSize;
  f.polyDegree = r.polyDegree;
  std::memcpy(f.polyCoefficients, r.polyCoefficients, sizeof f.polyCoefficients);
}

}  // namespace psa::gpu
