// kvPoolCreate and kvPoolAppend: the addon side of a KvCache on a device (lib/kv-cache.ts).
// The pool is three device tensors (keys, values, metadata) held by the cache in JS, so its
// memory is accounted to the collector like any tensor's; the page table stays on the host.
#pragma once

#include <napi.h>

#include "../cuda/decode/decode_api.h"
#include "device_memory.h"

namespace psa::binding {

// A pool handed in as (keys, values, meta) tensors with its geometry from `request`: a share of
// each tensor's memory, held while the device works on it, and the view the CUDA layer takes.
struct PoolShares {
  SharedMemory keys, values, meta;
  gpu::PoolBuffers view;
};
PoolShares pool_of(Napi::Env env, const Napi::Value& keys, const Napi::Value& values, const Napi::Value& meta, const Napi::Object& request);

Napi::Value KvPoolCreate(const Napi::CallbackInfo& info);
Napi::Value KvPoolAppend(const Napi::CallbackInfo& info);

}  // namespace psa::binding
