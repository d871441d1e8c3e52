// Every function JS can call goes through Guarded<>: a coded error thrown inside becomes the
// JS exception. node-addon-api would rethrow it as a C++ exception when throwing into JS fails,
// which it does while a worker_thread is being terminated (JS can no longer run there), and a
// C++ exception out of a Node-API callback ends the process (std::terminate). Here the failure
// is dropped instead: nobody is left to catch it.
#pragma once

#include <napi.h>

#include <new>

#include "addon_state.h"

namespace psa::binding {

template <Napi::Value (*Entry)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  try {
    return Entry(info);
  } catch (const Napi::Error& e) {
    try {
      napi_throw(env, e.Value());
    } catch (...) {
    }
  } catch (const std::bad_alloc&) {
    try {
      napi_throw(env, AddonState::of(info.Env()).make_error(info.Env(), "oom", "", "out of host memory"));
    } catch (...) {
    }
  }
  return Napi::Value();
}

}  // namespace psa::binding
