// Host arrays cross the boundary by copy, inside the JS call: the work in flight never reads
// caller memory, so mutating, transferring or collecting the array afterwards cannot reach
// it. SharedArrayBuffer-backed arrays are read like any other (napi_get_typedarray_info gives
// their data; the ArrayBuffer accessors refuse them).
#pragma once

#include <napi.h>

#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "addon_state.h"

namespace psa::binding {

template <typename T>
std::vector<T> copy_host_array(Napi::Env env, const Napi::Value& value, napi_typedarray_type expected, const std::string& argument,
                               const char* expected_name) {
  const AddonState& state = AddonState::of(env);
  napi_typedarray_type type;
  std::size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  std::size_t offset = 0;
  if (!value.IsTypedArray() || napi_get_typedarray_info(env, value, &type, &length, &data, &buffer, &offset) != napi_ok || type != expected) {
    state.raise(env, "dtype", argument, argument + " must be " + expected_name);
  }
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached) {
    state.raise(env, "shape", argument, argument + "'s ArrayBuffer was detached (transferred)");
  }
  try {
    std::vector<T> copy(length);
    if (length) std::memcpy(copy.data(), data, length * sizeof(T));
    return copy;
  } catch (const std::bad_alloc&) {
    state.raise(env, "oom", argument, "out of host memory copying " + argument);
  }
}

}  // namespace psa::binding
