#include "addon_state.h"

namespace psa::binding {
namespace {
constexpr const char* kRefusedName = "psaDeviceUnusable";
}

Napi::Value AddonState::make_error(Napi::Env env, const char* kind, const std::string& name, const std::string& message) const {
  if (error_factory.IsEmpty()) return Napi::Error::New(env, message).Value();
  return error_factory.Call({Napi::String::New(env, kind), Napi::String::New(env, name), Napi::String::New(env, message)});
}

Napi::Value AddonState::error_for(Napi::Env env, const gpu::Status& status) const {
  // No device, no driver, no CUDA in this build, or a lost context: the backend is
  // unavailable, not broken.
  const bool unavailable = status.name == "cudaErrorInsufficientDriver" || status.name == "cudaErrorNoDevice" ||
                           status.name == "psaNotBuiltWithCuda" || status.name == kRefusedName;
  if (unavailable) return make_error(env, "unavailable", status.name, status.message);
  if (status.name == "cudaErrorMemoryAllocation") return make_error(env, "oom", status.name, status.message);
  // The only device index a caller passes is the upload's.
  if (status.name == "cudaErrorInvalidDevice") return make_error(env, "option", "options.device", status.message);
  return make_error(env, "cuda", status.name, status.message);
}

void AddonState::raise(Napi::Env env, const char* kind, const std::string& argument, const std::string& message) const {
  throw Napi::Error(env, make_error(env, kind, argument, message));
}

gpu::Status refused_after(const gpu::Status& sticky) {
  return gpu::Status{sticky.code, kRefusedName,
                     "the device is unusable since an earlier call failed with " + sticky.name + " (" + sticky.message +
                         "); the CUDA context is lost for this process: restart it to use the device again"};
}

}  // namespace psa::binding
