// The value check of device tensors, as the addon sees it (finite.cu): plain C++ types, no
// CUDA headers. Implemented by finite.cu (CUDA or emulated build) and by device_api_none.cc.
#pragma once

#include <cstddef>

#include "../device_api.h"

namespace psa::gpu {

// The first index i < n of `src` (n elements of `type`) whose value x fails |x| < bound: a NaN
// or an infinity always does; a finite bound also catches values that a later conversion
// would round to infinity. `index` is -1 when every value passes. Blocks until done.
Status first_non_finite(const Buffer& src, DType type, std::size_t n, float bound, long long& index);

}  // namespace psa::gpu
