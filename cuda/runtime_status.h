// A CUDA runtime result as a Status (device_api.h), for the host code of the CUDA layer.
#pragma once

#include <string>

#include "cuda_compat.h"
#include "device_api.h"

namespace psa::gpu {

// Latches device_unusable() when `failure` is one of the runtime's sticky errors (device_api.cu).
void note_failure(cudaError_t err, const Status& failure);

// Success, or the runtime's error name and "<what>: <description>". Clears a non-sticky error
// so the next call starts clean; a sticky one (the context is lost) latches the device as
// unusable for the rest of the process.
inline Status status_of(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::success();
  Status s;
  s.code = static_cast<int>(err);
  s.name = cudaGetErrorName(err);
  s.message = std::string(what) + ": " + cudaGetErrorString(err);
  cudaGetLastError();
  note_failure(err, s);
  return s;
}

}  // namespace psa::gpu

// Return the Status of a failed runtime call from the enclosing function.
#define PSA_TRY(call, what)                                               \
  do {                                                                    \
    ::psa::gpu::Status psa_status_ = ::psa::gpu::status_of((call), (what)); \
    if (!psa_status_.ok()) return psa_status_;                            \
  } while (0)
