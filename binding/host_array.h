// Host arrays cross the boundary inside the JS call, checked (type, detached buffer). Most are
// copied, so mutating, transferring or collecting the array afterwards cannot reach work in
// flight; a view is for work that holds a reference to the array while it reads. Arrays on a
// SharedArrayBuffer are read like any other (napi_get_typedarray_info gives their data; the
// ArrayBuffer accessors refuse them).
#pragma once

#include <napi.h>

#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "addon_state.h"

namespace psa::binding {

// A typed array's elements read in place, for work that holds a reference to the array for as
// long as it reads (the cpu decode's cache). `length` receives the element count.
template <typename T>
const T* view_host_array(Napi::Env env, const Napi::Value& value, napi_typedarray_type expected, const std::string& argument, const char* expected_name,
                         std::size_t& length) {
  const AddonState& state = AddonState::of(env);
  napi_typedarray_type type;
  void* data = nullptr;
  napi_value buffer = nullptr;
  std::size_t offset = 0;
  length = 0;
  if (!value.IsTypedArray() || napi_get_typedarray_info(env, value, &type, &length, &data, &buffer, &offset) != napi_ok || type != expected) {
    state.raise(env, "dtype", argument, argument + " must be " + expected_name);
  }
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached) {
    state.raise(env, "shape", argument, argument + "'s ArrayBuffer was detached (transferred)");
  }
  return static_cast<const T*>(data);
}

template <typename T>
std::vector<T> copy_host_array(Napi::Env env, const Napi::Value& value, napi_typedarray_type expected, const std::string& argument,
                               const char* expected_name) {
  std::size_t length = 0;
  const T* data = view_host_array<T>(env, value, expected, argument, expected_name, length);
  try {
    std::vector<T> copy(length);
    if (length) std::memcpy(copy.data(), data, length * sizeof(T));
    return copy;
  } catch (const std::bad_alloc&) {
    AddonState::of(env).raise(env, "oom", argument, "out of host memory copying " + argument);
  }
}

}  // namespace psa::binding
