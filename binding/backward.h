// The backward entry point of the addon (backward.cc).
#pragma once

#include <napi.h>

namespace psa::binding {

// backward(q, k, v, dO, request) => Promise<{ dq, dk, dv }>: float32 device tensors. The request
// is attention()'s (a sparse one carries the forward's layout) plus `thresholds`, the forward's
// top-k thresholds (a Float32Array [B, H, Nq]) when it had top-k.
Napi::Value Backward(const Napi::CallbackInfo& info);

}  // namespace psa::binding
