// decode and mergeAttention on device tensors: the addon side of lib/backends/device-decode.ts.
#pragma once

#include <napi.h>

namespace psa::binding {

Napi::Value Decode(const Napi::CallbackInfo& info);
Napi::Value MergeAttention(const Napi::CallbackInfo& info);

}  // namespace psa::binding
