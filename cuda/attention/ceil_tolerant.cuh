// ceil(x) forgiving 1e-9 relative (so a tiny positive product still rounds up to 1), the library's rounding of a ratio times a count into a count
// (`ratio` of block selection and `topKRatio`: docs/contract.md#block-selection and
// docs/contract.md#top-k-thresholds): 0.28 * 25 = 7.000000000000001 keeps 7, not 8.
#pragma once

#include <cmath>

#include "../cuda_compat.h"

namespace psa::gpu {

__host__ __device__ inline double ceil_tolerant(double x) { return ceil(x - 1e-9 * fabs(x)); }

}  // namespace psa::gpu
