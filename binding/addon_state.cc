#include "addon_state.h"

namespace psa::binding {

Napi::Value AddonState::make_error(Napi::Env env, const char* kind, const std::string& name, const std::string& message) const {
  if (error_factory.IsEmpty()) return Napi::Error::New(env, message).Value();
  return error_factory.Call({Napi::String::New(env, kind), Napi::String::New(env, name), Napi::String::New(env, message)});
}

Napi::Value AddonState::error_for(Napi::Env env, const gpu::Status& status) const {
  // No device, no driver, or no CUDA in this build: the backend is unavailable, not broken.
  const bool unavailable = status.name == "cudaErrorInsufficientDriver" || status.name == "cudaErrorNoDevice" ||
                           status.name == "psaNotBuiltWithCuda";
  const char* kind = unavailable ? "unavailable" : status.name == "cudaErrorMemoryAllocation" ? "oom" : "cuda";
  return make_error(env, kind, status.name, status.message);
}

void AddonState::raise(Napi::Env env, const char* kind, const std::string& message) const {
  throw Napi::Error(env, make_error(env, kind, "", message));
}

}  // namespace psa::binding
