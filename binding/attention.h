// The attention entry points of the addon (attention.cc).
#pragma once

#include <napi.h>

#include "../cuda/attention_api.h"
#include "device_tensor.h"

namespace psa::binding {

// The request object of attention() and buildLayout(), checked and copied (also read by backward.cc).
gpu::AttentionRequest parse_request(Napi::Env env, const Napi::Value& value);

// The input tensors of a call: a share of each one's memory, held until the call ends, so a
// dispose() meanwhile only drops the caller's share.
struct Inputs {
  SharedMemory q, k, v;
};

// Reads q, k (and v) from info[0..2] into the request, checking their sizes against the shape.
Inputs attach_inputs(Napi::Env env, const Napi::CallbackInfo& info, gpu::AttentionRequest& r, bool withV);

// attention(q, k, v, request) => Promise<{ output, lse?, thresholds?, layout?, keptPairs, emptyRows }>
Napi::Value Attention(const Napi::CallbackInfo& info);
// buildLayout(q, k, request) => Promise<{ offsets, indices, flags }>
Napi::Value BuildLayout(const Napi::CallbackInfo& info);

}  // namespace psa::binding
