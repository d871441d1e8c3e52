// The backward pass over the forward's block layout (docs/backward.md), FA2-style in two
// passes over the thread pool, both deterministic and independent of the thread count:
//   1. per (batch, head, query block), rows as the forward walks them: the scores of every
//      visited key, the row's maximum and sum under the forward's thresholds, O = P·V
//      recomputed, D_i = dO_i · O_i, dP = dO·Vᵀ, dS and dQ = scale · dS·K;
//   2. per (batch, kv head, key block), over the query blocks of every head of the group that
//      visit it (the layout transposed once): the tile's P and dS again from the row
//      statistics of pass 1, dV += Pᵀ·dO and dK += scale · dSᵀ·Q, written once at the end.
#pragma once

#include "backward_kernels.h"
#include "kernels.h"
#include "problem.h"

namespace psa::cpu {

struct BackwardInputs {
  const float* q;
  const float* k;
  const float* v;
  const float* dO;          // q's shape
  const float* thresholds;  // the forward's top-k thresholds [batch, heads, seqQ], or null
};

struct Gradients {
  float* dq;  // q's shape
  float* dk;  // k's shape, summed over the query heads of each kv group
  float* dv;
};

// `layout` is the one the forward visited, with one row per query block of queryBlockSize rows
// (key blocks of layout.blockSize keys); it must be consistent with the problem.
void backward(const Problem& p, const BlockLayout& layout, int queryBlockSize, const BackwardInputs& in, const Gradients& out, int threads,
              const Kernels& kernels, const BackwardKernels& backwardKernels);

}  // namespace psa::cpu
