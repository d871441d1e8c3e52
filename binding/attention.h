// The attention entry points of the addon (attention.cc).
#pragma once

#include <napi.h>

namespace psa::binding {

// attention(q, k, v, request) => Promise<{ output, lse?, thresholds?, layout?, keptPairs, emptyRows }>
Napi::Value Attention(const Napi::CallbackInfo& info);
// buildLayout(q, k, request) => Promise<{ offsets, indices, flags }>
Napi::Value BuildLayout(const Napi::CallbackInfo& info);

}  // namespace psa::binding
