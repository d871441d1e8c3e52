// The value check of device tensors, as the addon sees it (finite.cu): plain C++ types, no
// CUDA headers. Implemented by finite.cu (CUDA or emulated build) and by device_api_none.cc.
#pragma once

#include <cstddef>

#include "../device_api.h"

namespace psa::gpu {

// One tensor of a value check: n elements of `type` at src.
struct ValueCheck {
  Buffer src;
  DType type = DType::F32;
  std::size_t n = 0;
};

// For each check c, the first index i < c.n whose value x fails |x| < bound: a NaN or an
// infinity always does; a finite bound also catches values that a later conversion would
// round to infinity. indices[c] is -1 when every value passes. All checks run on the device at
// once and the call blocks until done: one synchronisation per device they are on.
Status first_non_finite(const ValueCheck* checks, std::size_t count, float bound, long long* indices);

}  // namespace psa::gpu
