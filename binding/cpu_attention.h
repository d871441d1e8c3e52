// The addon side of the cpu backend: cpuInfo(), cpuAttention(q, k, v, request) and
// cpuBuildLayout(q, k, request) on Float32Arrays, computed by cpu/ on the thread pool.
#pragma once

#include <napi.h>

namespace psa::binding {

void RegisterCpu(Napi::Env env, Napi::Object exports);

}  // namespace psa::binding
