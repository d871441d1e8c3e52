// One spelling for kernel launches, so the same sources build under nvcc and under the CPU
// execution model (which has no <<<>>>).
#pragma once

#if defined(__CUDACC__)
#define PSA_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<(grid), (block), (shared_bytes), (stream)>>>
#endif
