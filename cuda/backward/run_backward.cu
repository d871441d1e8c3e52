// Host orchestration of one backward call on the device (backward_api.h), on the calling
// thread's stream:
//   1. q, k, v and dO in the Tensor Core element type (dO also in float32), the layout and the
//      forward's thresholds uploaded;
//   2. the forward recomputed with that layout and those thresholds (attention_forward) for O and
//      the LSE: the saved state holds the LSE but not the output, and keeping O would double
//      what a training step holds per layer; the recomputation costs one forward (see PERF.md);
//   3. the pre-pass (prepare.h): the polynomial's row maxima, delta = dO . O and the
//      row statistics; the layout transposed;
//   4. dK, dV, then dQ (attention_backward_gradients).
// Every temporary is freed on every path; on failure the gradients are freed too.
#include <cstring>
#include <utility>

#include "../attention/forward.h"
#include "../attention/request_params.h"
#include "../backward_api.h"
#include "../convert.cuh"
#include "../device_buffer.h"
#include "../runtime_status.h"
#include "backward.h"
#include "prepare.h"

namespace psa::gpu {
namespace {

constexpr int kThreads = 256;
// `buf` (n elements of `from`) as elements of `to`: itself when it already is, else a copy in
// `tmp` (16-bit of the other kind goes through float32, exact, then rounds once).
Status convert(const Buffer& buf, DType from, DType to, std::size_t n, int device, Owned& tmp, Owned& wide, const void*& out) {
  if (from == to) {
    out = buf.ptr;
    return Status::success();
  }
  const float* f32 = static_cast<const float*>(buf.ptr);
  Status s;
  if (from != DType::F32) {
    Owned& dst = to == DType::F32 ? tmp : wide;
    if (!(s = dst.alloc(n * 4, device)).ok()) return s;
    if (from == DType::F16) PSA_LAUNCH(widen_to_f32_kernel<__half>, grid_for(n, kThreads), kThreads, 0, launch_stream())(static_cast<const __half*>(buf.ptr), dst.as<float>(), n);
    else PSA_LAUNCH(widen_to_f32_kernel<__nv_bfloat16>, grid_for(n, kThreads), kThreads, 0, launch_stream())(static_cast<const __nv_bfloat16*>(buf.ptr), dst.as<float>(), n);
    PSA_TRY(cudaGetLastError(), "converting the backward's inputs");
    f32 = dst.as<const float>();
    if (to == DType::F32) {
      out = f32;
      return Status::success();
    }
  }
  if (!(s = tmp.alloc(n * 2, device)).ok()) return s;
  if (to == DType::F16) PSA_LAUNCH(narrow_f32_kernel<__half>, grid_for(n, kThreads), kThreads, 0, launch_stream())(f32, tmp.as<__half>(), n);
  else PSA_LAUNCH(narrow_f32_kernel<__nv_bfloat16>, grid_for(n, kThreads), kThreads, 0, launch_stream())(f32, tmp.as<__nv_bfloat16>(), n);
  PSA_TRY(cudaGetLastError(), "converting the backward's inputs");
  out = tmp.as<const void>();
  return Status::success();
}

Status invalid(const char* why) { return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", why}; }

}  // namespace

Status run_backward(const BackwardRequest& req, BackwardResult& out) {
  const AttentionRequest& r = req.problem;
  if (r.batch < 1 || r.heads < 1 || r.kvHeads < 1 || r.heads % r.kvHeads != 0 || r.seqQ < 1 || r.seqK < 1 || r.headDim < 1 || r.headDim > kBackwardMaxHeadDim ||
      (r.compute != DType::F16 && r.compute != DType::BF16) || !r.q.ptr || !r.k.ptr || !r.v.ptr || !req.dO.ptr) {
    return invalid("backward request has an invalid shape, element type or input");
  }
  if (r.sparse != r.hasLayout) return invalid("a sparse backward needs the forward's layout");
  const std::size_t rowsQ = static_cast<std::size_t>(r.batch) * r.heads * r.seqQ;
  const std::size_t nq = rowsQ * r.headDim;
  const std::size_t nk = static_cast<std::size_t>(r.batch) * r.kvHeads * r.seqK * r.headDim;
  if (!req.thresholds.empty() && req.thresholds.size() != rowsQ) return invalid("the thresholds do not fit the call's shape");
  PSA_TRY(cudaSetDevice(r.q.device), "selecting the CUDA device");
  const int dev = r.q.device;

  BackwardParams bp;
  ForwardParams& f = bp.fwd;
  Owned q16, k16, v16, dO16, dO32, wq, wk, wv, wdO16, wdO32;
  const void *q, *k, *v, *dO, *dOf;
  Status s = convert(r.q, r.qType, r.compute, nq, dev, q16, wq, q);
  if (s.ok()) s = convert(r.k, r.kType, r.compute, nk, dev, k16, wk, k);
  if (s.ok()) s = convert(r.v, r.vType, r.compute, nk, dev, v16, wv, v);
  if (s.ok()) s = convert(req.dO, req.dOType, r.compute, nq, dev, dO16, wdO16, dO);
  if (s.ok()) s = convert(req.dO, req.dOType, DType::F32, nq, dev, dO32, wdO32, dOf);
  if (!s.ok()) return s;
  const MmaType type = r.compute == DType::BF16 ? MmaType::BF16 : MmaType::F16;
  f.q = static_cast<const std::uint16_t*>(q);
  f.k = static_cast<const std::uint16_t*>(k);
  f.v = static_cast<const std::uint16_t*>(v);
  bp.dO = static_cast<const std::uint16_t*>(dO);
  f.qStrides = f.oStrides = strides_of(r.bnhd, r.heads, r.seqQ, r.headDim);
  f.kStrides = f.vStrides = strides_of(r.bnhd, r.kvHeads, r.seqK, r.headDim);
  set_problem(f, r);

  // The forward's kept sets: its layout and thresholds.
  Owned offsets, indices, flags, thresholds;
  const long long queryBlocks = (r.seqQ + r.blockSize - 1) / r.blockSize, keyBlocks = (r.seqK + r.blockSize - 1) / r.blockSize;
  if (r.sparse) {
    if (r.layoutOffsets.size() != static_cast<std::size_t>(r.batch) * r.heads * queryBlocks + 1 || r.layoutFlags.size() != r.layoutIndices.size()) {
      return invalid("the layout does not fit the call's geometry");
    }
    if (!(s = upload(offsets, r.layoutOffsets, dev, "copying the backward's layout")).ok() || !(s = upload(indices, r.layoutIndices, dev, "copying the backward's layout")).ok() || !(s = upload(flags, r.layoutFlags, dev, "copying the backward's layout")).ok()) return s;
    f.layoutOffsets = offsets.as<const std::int32_t>();
    f.layoutIndices = indices.as<const std::int32_t>();
    f.layoutFlags = flags.as<const std::uint8_t>();
  }
  if (!req.thresholds.empty()) {
    if (!(s = upload(thresholds, req.thresholds, dev, "copying the forward's top-k thresholds")).ok()) return s;
    f.threshold = thresholds.as<const float>();
  }

  // 2. The forward again, for O and the LSE.
  Owned o, lse, rowMax, rows, dq, dk, dv;
  if (!(s = o.alloc(nq * 4, dev)).ok() || !(s = lse.alloc(rowsQ * 4, dev)).ok() || !(s = rows.alloc(rowsQ * sizeof(RowStats), dev)).ok()) return s;
  if (!(s = dq.alloc(nq * 4, dev)).ok() || !(s = dk.alloc(nk * 4, dev)).ok() || !(s = dv.alloc(nk * 4, dev)).ok()) return s;
  f.o = o.as<float>();
  f.lse = lse.as<float>();
  PSA_TRY(attention_forward(f, type, launch_stream()), "recomputing the forward for the backward");
  f.o = nullptr;
  f.lse = nullptr;

  // 3. The pre-pass.
  if (r.polyDegree > 0) {
    if (!(s = rowMax.alloc(rowsQ * 4, dev)).ok()) return s;
    PSA_TRY(attention_backward_row_max(f, type, rowMax.as<float>(), launch_stream()), "computing the row maxima");
  }
  PSA_TRY(backward_row_stats(static_cast<const float*>(dOf), o.as<const float>(), lse.as<const float>(), r.polyDegree > 0 ? rowMax.as<const float>() : nullptr, f.shape,
                             f.qStrides, rows.as<RowStats>(), launch_stream()),
          "computing dO . O");
  bp.rows = rows.as<const RowStats>();
  Owned counts, tOffsets, tQueryBlocks, tEntries;
  if (r.sparse) {
    const TransposeShape ts{r.batch * r.heads, static_cast<int>(queryBlocks), static_cast<int>(keyBlocks)};
    const std::size_t columns = static_cast<std::size_t>(ts.batchHeads) * ts.keyBlocks;
    const std::size_t entries = r.layoutIndices.size();
    if (!(s = counts.alloc(columns * 4, dev)).ok() || !(s = tOffsets.alloc((columns + 1) * 4, dev)).ok() || !(s = tQueryBlocks.alloc(entries * 4, dev)).ok() ||
        !(s = tEntries.alloc(entries * 4, dev)).ok()) {
      return s;
    }
    PSA_TRY(backward_transpose_layout(f.layoutOffsets, f.layoutIndices, ts, counts.as<std::int32_t>(), tOffsets.as<std::int32_t>(), tQueryBlocks.as<std::int32_t>(),
                                      tEntries.as<std::int32_t>(), launch_stream()),
            "transposing the layout");
    bp.tOffsets = tOffsets.as<const std::int32_t>();
    bp.tQueryBlocks = tQueryBlocks.as<const std::int32_t>();
    bp.tEntries = tEntries.as<const std::int32_t>();
  }

  // 4. The gradients.
  bp.dq = dq.as<float>();
  bp.dk = dk.as<float>();
  bp.dv = dv.as<float>();
  PSA_TRY(attention_backward_gradients(bp, type, launch_stream()), "launching the backward kernels");
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "running the backward kernels");
  out.dq = dq.release();
  out.dk = dk.release();
  out.dv = dv.release();
  return Status::success();
}

}  // namespace psa::gpu
