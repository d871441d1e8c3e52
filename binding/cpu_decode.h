// The addon side of the cpu decode: cpuDecode(q, cache, request) over a host KvCache's pages,
// computed by cpu/decode.cc on the thread pool.
#pragma once

#include <napi.h>

namespace psa::binding {

void RegisterCpuDecode(Napi::Env env, Napi::Object exports);

}  // namespace psa::binding
