// The inner loops the backward adds to the forward's (kernels.h): compiled from
// backward_kernels.inl into the same two kernel sets, next to kernels.inl, so they share its
// exponentials and vector helpers and run on the instruction set the forward's set runs on.
#pragma once

#include "kernels.h"

namespace psa::cpu {

struct BackwardKernels {
  const char* name;
  // o[c][d] += sum_r p[r][c] * x[r][d] (p read transposed), for cols % kRowStep == 0, dims % kColStep == 0.
  void (*accumulateTransposed)(const float* p, int pPitch, const float* x, int xPitch, int rows, int cols, int dims, float* o, int oPitch);
  // One row of a tile, in place: where the score s[c] is kept (finite, >= tau), s[c] becomes
  // P = E(s - max) * invSum and dp[c] becomes dS = E'(s - max) * invSum * (dp[c] - rowD);
  // elsewhere both become 0. width % 8 == 0; E and coefficients as in Kernels::softmax.
  void (*gradientRow)(float* s, float* dp, int width, float tau, float max, float invSum, float rowD, const float* coefficients, int degree);
};

const BackwardKernels& portableBackwardKernels();
// Null where the AVX2+FMA set is not compiled in.
const BackwardKernels* avx2BackwardKernels();
// The backward set compiled for the instruction set of `forward` (one of the forward's sets).
const BackwardKernels& backwardKernelsFor(const Kernels& forward);

}  // namespace psa::cpu
