// What every CUDA source includes instead of <cuda_runtime.h>: the real runtime under nvcc,
// the CPU execution model (emu/emu.h) in the emulated build. Also the two spellings that
// differ between them: the launch macro and dynamic shared memory.
#pragma once

#if defined(PSA_EMULATED)
#include "emu/emu.h"
#else
#include <cuda_runtime.h>

// PSA_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...) launches kernel<<<...>>>(args...).
#define PSA_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<(grid), (block), (shared_bytes), (stream)>>>
// PSA_DYNAMIC_SHARED(T, name) declares `T* name` pointing at the block's dynamic shared memory.
#define PSA_DYNAMIC_SHARED(T, name)                                  \
  extern __shared__ __align__(16) unsigned char psa_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(psa_dynamic_smem_)
#endif
