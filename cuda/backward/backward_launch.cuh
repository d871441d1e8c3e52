// Host side of one head-dim unit (backward_hdim<D>.cu): the launches of its kernels and the one
// dispatch point where runtime options become template arguments (element type, causal, exp
// flavour), as the forward's fwd::run.
#pragma once

#include "dkdv_kernel.cuh"
#include "dq_kernel.cuh"
#include "row_max_kernel.cuh"

namespace psa::gpu::bwd {

template <typename K>
cudaError_t allow_smem(K kernel, int bytes) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

template <typename Tr, MmaType T, bool Causal, int PolyDegree>
cudaError_t launch_gradients(const BackwardParams& bp, cudaStream_t stream) {
  const Shape& sh = bp.fwd.shape;
  auto dkdv = &attention_backward_dkdv_kernel<Tr, T, Causal, PolyDegree>;
  auto dq = &attention_backward_dq_kernel<Tr, T, Causal, PolyDegree>;
  cudaError_t err = allow_smem(dkdv, Tr::kDkdvSmemBytes);
  if (err == cudaSuccess) err = allow_smem(dq, Tr::kDqSmemBytes);
  if (err != cudaSuccess) return err;
  const dim3 keyGrid((sh.seqK + Tr::kBlockN - 1) / Tr::kBlockN, sh.kvHeads, sh.batch);
  PSA_LAUNCH(dkdv, keyGrid, dim3(Tr::kThreads), Tr::kDkdvSmemBytes, stream)(bp);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const dim3 queryGrid((sh.seqQ + Tr::kBlockM - 1) / Tr::kBlockM, sh.heads, sh.batch);
  PSA_LAUNCH(dq, queryGrid, dim3(Tr::kThreads), Tr::kDqSmemBytes, stream)(bp);
  return cudaGetLastError();
}

template <typename Tr, MmaType T, bool Causal>
cudaError_t launch_row_max(const ForwardParams& p, float* rowMax, cudaStream_t stream) {
  auto kernel = &attention_backward_row_max_kernel<Tr, T, Causal>;
  constexpr int kSmem = Tr::kRowMaxSmemBytes;
  cudaError_t err = allow_smem(kernel, kSmem);
  if (err != cudaSuccess) return err;
  const dim3 grid((p.shape.seqQ + Tr::kBlockM - 1) / Tr::kBlockM, p.shape.heads, p.shape.batch);
  PSA_LAUNCH(kernel, grid, dim3(Tr::kThreads), kSmem, stream)(p, rowMax);
  return cudaGetLastError();
}

template <typename Tr, MmaType T, bool Causal>
cudaError_t dispatch_exp(const BackwardParams& bp, cudaStream_t stream) {
  // Every degree zero-padded to 8: the unrolled Horner (and its derivative's) then equals the
  // true degree's exactly, and the backward, less sensitive than the forward to the few FMAs
  // saved, compiles a third fewer kernels.
  if (bp.fwd.polyDegree == 0) return launch_gradients<Tr, T, Causal, 0>(bp, stream);
  return launch_gradients<Tr, T, Causal, 8>(bp, stream);
}

template <typename Tr>
cudaError_t gradients(const BackwardParams& bp, MmaType type, cudaStream_t stream) {
  const bool causal = bp.fwd.mask.causal;
  if (type == MmaType::BF16) return causal ? dispatch_exp<Tr, MmaType::BF16, true>(bp, stream) : dispatch_exp<Tr, MmaType::BF16, false>(bp, stream);
  return causal ? dispatch_exp<Tr, MmaType::F16, true>(bp, stream) : dispatch_exp<Tr, MmaType::F16, false>(bp, stream);
}

template <typename Tr>
cudaError_t row_max(const ForwardParams& p, MmaType type, float* rowMax, cudaStream_t stream) {
  const bool causal = p.mask.causal;
  if (type == MmaType::BF16) return causal ? launch_row_max<Tr, MmaType::BF16, true>(p, rowMax, stream) : launch_row_max<Tr, MmaType::BF16, false>(p, rowMax, stream);
  return causal ? launch_row_max<Tr, MmaType::F16, true>(p, rowMax, stream) : launch_row_max<Tr, MmaType::F16, false>(p, rowMax, stream);
}

}  // namespace psa::gpu::bwd
