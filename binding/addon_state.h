// Per-environment state of the addon (one per main thread or worker_thread): the JS error
// factory and the DeviceTensor constructor. Nothing here is process-global, so the addon is
// safe to load in several worker_threads at once.
#pragma once

#include <napi.h>

#include <string>

#include "../cuda/device_api.h"

namespace psa::binding {

class AddonState {
 public:
  Napi::FunctionReference error_factory;  // (kind, name, message) => PsaError subclass
  Napi::FunctionReference tensor_constructor;

  static AddonState& of(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

  // A coded JS error. kind: "cuda", "oom", "unavailable", "disposed", "shape", "dtype",
  // "option", "value"; name: the runtime's error name for "cuda", else the argument at fault.
  Napi::Value make_error(Napi::Env env, const char* kind, const std::string& name, const std::string& message) const;
  // The JS error for a failed runtime call.
  Napi::Value error_for(Napi::Env env, const gpu::Status& status) const;
  // Throw a coded error about `argument` synchronously (argument validation).
  [[noreturn]] void raise(Napi::Env env, const char* kind, const std::string& argument, const std::string& message) const;
};

// The Status a call gets once the device is latched unusable (device_api.h): not the runtime
// failing again, but the backend being unavailable, with the first failure as the reason.
gpu::Status refused_after(const gpu::Status& sticky);

}  // namespace psa::binding
