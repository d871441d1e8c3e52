// Launcher of the Tensor Core matmul check (mma_matmul.cu): C[M x N] = A[M x K] * B, with B
// given as N x K ("nt", b_transposed = false) or K x N ("nn", b_transposed = true); all sizes
// multiples of 64; A and B are device pointers to 16-bit values of `type`, C to float.
#pragma once

#include <cstdint>

#include "../cuda_compat.h"
#include "../primitives.cuh"

namespace psa::gpu {
cudaError_t mma_matmul(MmaType type, bool b_transposed, const std::uint16_t* a, const std::uint16_t* b, float* c, int M, int N, int K,
                       cudaStream_t stream);
}
