// The forward pass over a block layout: per (batch, head, query block) the visited key
// blocks only, scores of 16 query rows at a time against every visited key (one tile row,
// kept in L2), element masks on partial blocks only, the top-k threshold of each row, the
// softmax and O = P·V. Work items are layout rows, spread over the thread pool; with few
// query rows in all, each row's key blocks are split over it as well.
#pragma once

#include "kernels.h"
#include "problem.h"

namespace psa::cpu {

// `layout` must be consistent with the problem (lib/layout.ts verifyLayout); q, k and v are
// in the problem's memory layout and stay untouched. Results do not depend on `threads` (>= 1).
void forward(const Problem& p, const BlockLayout& layout, const float* q, const float* k, const float* v, ForwardResult& out,
             int threads, const Kernels& kernels);

}  // namespace psa::cpu
