// The backward entry point of the CUDA layer, as the addon sees it: plain C++ types, no CUDA
// headers. Implemented by backward/run_backward.cu (CUDA or emulated build) and by
// device_api_none.cc's companion backward/backward_none.cc (a build without CUDA).
#pragma once

#include <vector>

#include "attention_api.h"

namespace psa::gpu {

// The gradients of the forward `problem` describes (its layout given, its top-k thresholds
// given: the forward's kept sets), for upstream gradient dO (the shape and strides of q).
struct BackwardRequest {
  AttentionRequest problem;  // q, k, v, shape, mask, softmax; sparse calls carry their layout (hasLayout)
  Buffer dO;
  DType dOType = DType::F32;
  std::vector<float> thresholds;  // [B, H, Nq], empty without top-k
};

// Float32 buffers owned by the caller once run_backward succeeds: dq like q, dk and dv like k.
struct BackwardResult {
  Buffer dq, dk, dv;
};

// Runs the backward; on failure nothing is left allocated and `out` is unchanged.
Status run_backward(const BackwardRequest& request, BackwardResult& out);

}  // namespace psa::gpu
