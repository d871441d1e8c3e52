// Host orchestration of one attention call on the device (attention_api.h): inputs converted
// to the Tensor Core element type, the layout (uploaded, or selected here), top-k thresholds,
// the fused forward and its row counts, all on the calling thread's stream. Every temporary is
// freed on every path; on failure the outputs are freed too, so nothing is half-made.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../attention_api.h"
#include "../convert.cuh"
#include "../device_buffer.h"
#include "../cuda_compat.h"
#include "../runtime_status.h"
#include "forward.h"
#include "params.h"
#include "request_params.h"
#include "select.h"
#include "topk.h"

namespace psa::gpu {
namespace {

constexpr int kThreads = 256;
// Until done(): synchronises the stream on the way out, so that no copy into host memory the
// caller is about to free is still in flight after a failure.
class DrainOnFailure {
 public:
  DrainOnFailure() = default;
  DrainOnFailure(const DrainOnFailure&) = delete;
  DrainOnFailure& operator=(const DrainOnFailure&) = delete;
  ~DrainOnFailure() {
    if (armed_) cudaStreamSynchronize(launch_stream());
  }
  void done() { armed_ = false; }

 private:
  bool armed_ = true;
};

// Sums the per-row kept counts: out[0] = kept pairs, out[1] = rows with none.
__global__ void count_rows_kernel(const int* __restrict__ kept, std::size_t n, unsigned long long* out) {
  unsigned long long sum = 0, empty = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    sum += static_cast<unsigned long long>(kept[i]);
    empty += kept[i] == 0 ? 1ull : 0ull;
  }
  // One atomic per thread: the sums are exact (integers), so the order does not matter.
  if (sum) atomicAdd(&out[0], sum);
  if (empty) atomicAdd(&out[1], empty);
}

__global__ void fill_kernel(float* __restrict__ dst, std::size_t n, float value) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) dst[i] = value;
}

// Rows of a [rows x headDim] tensor as the kernels read them: rows of padded_row(headDim)
// elements of the compute type, zero past headDim, so that every head dim takes the 16-byte
// cp.async tile path (tile_load.cuh) and its full sectors.
int padded_row(int headDim) { return (headDim + 7) / 8 * 8; }

__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(__half x) { return to_f32(x); }
__device__ __forceinline__ float as_float(__nv_bfloat16 x) { return to_f32(x); }

// dst[row][c] = round(src[row][c]) for c < headDim, 0 for headDim <= c < paddedDim; grid-stride.
// A 16-bit source of the other kind goes through float32 (exact), then rounds once.
template <typename Src, typename Dst>
__global__ void to_compute_kernel(const Src* __restrict__ src, Dst* __restrict__ dst, std::size_t rows, int headDim, int paddedDim) {
  const std::size_t n = rows * static_cast<std::size_t>(paddedDim);
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t row = i / static_cast<std::size_t>(paddedDim);
    const int c = static_cast<int>(i - row * static_cast<std::size_t>(paddedDim));
    dst[i] = from_f32<Dst>(c < headDim ? as_float(src[row * static_cast<std::size_t>(headDim) + c]) : 0.0f);
  }
}

template <typename Dst>
Status to_compute(const void* src, DType type, void* dst, std::size_t rows, int headDim) {
  const int padded = padded_row(headDim);
  const unsigned grid = grid_for(rows * static_cast<std::size_t>(padded), kThreads);
  Dst* d = static_cast<Dst*>(dst);
  switch (type) {
    case DType::F32: PSA_LAUNCH((to_compute_kernel<float, Dst>), grid, kThreads, 0, launch_stream())(static_cast<const float*>(src), d, rows, headDim, padded); break;
    case DType::F16: PSA_LAUNCH((to_compute_kernel<__half, Dst>), grid, kThreads, 0, launch_stream())(static_cast<const __half*>(src), d, rows, headDim, padded); break;
    case DType::BF16:
      PSA_LAUNCH((to_compute_kernel<__nv_bfloat16, Dst>), grid, kThreads, 0, launch_stream())(static_cast<const __nv_bfloat16*>(src), d, rows, headDim, padded);
      break;
  }
  return status_of(cudaGetLastError(), "launching the input conversion");
}

// `buf` ([rows x headDim] of `type`) as padded_row(headDim)-element rows of `compute`: itself
// when it already is, else a converted, zero-padded copy in `tmp`.
Status as_compute_type(const Buffer& buf, DType type, DType compute, std::size_t rows, int headDim, int device, Owned& tmp, const std::uint16_t*& out) {
  if (type == compute && padded_row(headDim) == headDim) {
    out = static_cast<const std::uint16_t*>(buf.ptr);
    return Status::success();
  }
  Status s = tmp.alloc(rows * static_cast<std::size_t>(padded_row(headDim)) * 2, device);
  if (!s.ok()) return s;
  s = compute == DType::F16 ? to_compute<__half>(buf.ptr, type, tmp.as<void>(), rows, headDim) : to_compute<__nv_bfloat16>(buf.ptr, type, tmp.as<void>(), rows, headDim);
  if (!s.ok()) return s;
  out = tmp.as<const std::uint16_t>();
  return Status::success();
}

std::size_t rows_of(const AttentionRequest& r, bool keys) { return static_cast<std::size_t>(r.batch) * (keys ? r.kvHeads : r.heads) * (keys ? r.seqK : r.seqQ); }

std::size_t elements(const AttentionRequest& r, bool keys) {
  return static_cast<std::size_t>(r.batch) * (keys ? r.kvHeads : r.heads) * (keys ? r.seqK : r.seqQ) * r.headDim;
}

// The inputs and the parts of the kernels' parameters every step shares.
struct Prepared {
  Owned q16, k16, v16;
  ForwardParams fwd;
  MmaType type = MmaType::F16;
};

// The forward kernels' parameters, built once from the request; selection takes its shared parts.
Status prepare(const AttentionRequest& r, Prepared& p, bool withV) {
  PSA_TRY(cudaSetDevice(r.q.device), "selecting the CUDA device");
  const int dev = r.q.device;
  ForwardParams& f = p.fwd;
  Status s = as_compute_type(r.q, r.qType, r.compute, rows_of(r, false), r.headDim, dev, p.q16, f.q);
  if (s.ok()) s = as_compute_type(r.k, r.kType, r.compute, rows_of(r, true), r.headDim, dev, p.k16, f.k);
  if (s.ok() && withV) s = as_compute_type(r.v, r.vType, r.compute, rows_of(r, true), r.headDim, dev, p.v16, f.v);
  if (!s.ok()) return s;
  p.type = r.compute == DType::BF16 ? MmaType::BF16 : MmaType::F16;
  const int rowDim = padded_row(r.headDim);  // q, k and v as the kernels read them
  f.qStrides = strides_of(r.bnhd, r.heads, r.seqQ, rowDim);
  f.kStrides = f.vStrides = strides_of(r.bnhd, r.kvHeads, r.seqK, rowDim);
  f.oStrides = strides_of(r.bnhd, r.heads, r.seqQ, r.headDim);
  set_problem(f, r);
  return Status::success();
}

SelectParams select_params(const AttentionRequest& r, const ForwardParams& f) {
  SelectParams s;
  s.q = f.q;
  s.k = f.k;
  s.qStrides = f.qStrides;
  s.kStrides = f.kStrides;
  s.shape = f.shape;
  s.scale = f.scale;
  s.mask = f.mask;
  s.blockSize = f.blockSize;
  s.mode = static_cast<SelectMode>(static_cast<int>(r.choice));
  s.value = r.choiceValue;
  s.minBlocks = r.minBlocks;
  s.maxBlocks = r.maxBlocks;
  s.boundEstimate = r.boundEstimate;
  s.momentEstimate = r.momentEstimate;
  s.shareAcrossGroup = r.shareAcrossGroup;
  return s;
}

long long layout_rows(const AttentionRequest& r) {
  return static_cast<long long>(r.batch) * r.heads * ((r.seqQ + r.blockSize - 1) / r.blockSize);
}

// The CSR layout on the device: the caller's, or the selection's (also copied back to the host
// vectors, which hold it once the caller has synchronised the stream; they and the request must
// live until then). One synchronisation here: the selection's size, which sizes the indices.
struct DeviceLayout {
  Owned offsets, indices, flags;
};

Status layout_on_device(const AttentionRequest& r, const Prepared& p, DeviceLayout& dl, std::vector<std::int32_t>& hostOffsets,
                        std::vector<std::int32_t>& hostIndices, std::vector<std::uint8_t>& hostFlags) {
  const int dev = r.q.device;
  const long long rows = layout_rows(r);
  Status s;
  if (r.hasLayout) {
    const std::size_t n = r.layoutIndices.size();
    if (r.layoutOffsets.size() != static_cast<std::size_t>(rows + 1) || r.layoutFlags.size() != n) {
      return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", "the layout does not fit the call's geometry"};
    }
    if (!(s = dl.offsets.alloc((rows + 1) * 4, dev)).ok() || !(s = dl.indices.alloc(n * 4, dev)).ok() || !(s = dl.flags.alloc(n, dev)).ok()) return s;
    PSA_TRY(cudaMemcpyAsync(dl.offsets.as<void>(), r.layoutOffsets.data(), (rows + 1) * 4, cudaMemcpyHostToDevice, launch_stream()), "copying the layout");
    if (n) {
      PSA_TRY(cudaMemcpyAsync(dl.indices.as<void>(), r.layoutIndices.data(), n * 4, cudaMemcpyHostToDevice, launch_stream()), "copying the layout");
      PSA_TRY(cudaMemcpyAsync(dl.flags.as<void>(), r.layoutFlags.data(), n, cudaMemcpyHostToDevice, launch_stream()), "copying the layout");
    }
    // The host vectors belong to the request, which outlives the call and its final synchronisation.
    return Status::success();
  }
  const SelectParams sp = select_params(r, p.fwd);
  Owned workspace;
  if (!(s = workspace.alloc(select_workspace_bytes(sp), dev)).ok() || !(s = dl.offsets.alloc((rows + 1) * 4, dev)).ok()) return s;
  PSA_TRY(select_blocks_count(sp, p.type, workspace.as<void>(), dl.offsets.as<std::int32_t>(), launch_stream()), "selecting key blocks");
  std::vector<std::int32_t> offsets(rows + 1);
  PSA_TRY(cudaMemcpyAsync(offsets.data(), dl.offsets.as<void>(), (rows + 1) * 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the layout size");
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "selecting key blocks");
  const std::size_t n = static_cast<std::size_t>(offsets[rows]);
  if (!(s = dl.indices.alloc(n * 4, dev)).ok() || !(s = dl.flags.alloc(n, dev)).ok()) return s;
  PSA_TRY(select_blocks_fill(sp, workspace.as<void>(), dl.offsets.as<std::int32_t>(), dl.indices.as<std::int32_t>(), dl.flags.as<std::uint8_t>(), launch_stream()),
          "building the block layout");
  // Read back with the call's final synchronisation: the caller keeps the vectors until then.
  hostOffsets = std::move(offsets);
  hostIndices.assign(n, 0);
  hostFlags.assign(n, 0);
  if (n) {
    PSA_TRY(cudaMemcpyAsync(hostIndices.data(), dl.indices.as<void>(), n * 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the layout");
    PSA_TRY(cudaMemcpyAsync(hostFlags.data(), dl.flags.as<void>(), n, cudaMemcpyDeviceToHost, launch_stream()), "reading the layout");
  }
  return Status::success();
}

Status check_request(const AttentionRequest& r) {
  const bool ok = r.batch >= 1 && r.heads >= 1 && r.kvHeads >= 1 && r.heads % r.kvHeads == 0 && r.seqQ >= 1 && r.seqK >= 1 &&
                  r.headDim >= 1 && (r.compute == DType::F16 || r.compute == DType::BF16) && r.q.ptr && r.k.ptr;
  if (ok) return Status::success();
  return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", "attention request has an invalid shape or element type"};
}

}  // namespace

Status run_attention(const AttentionRequest& r, AttentionResult& out) {
  Status s = check_request(r);
  if (!s.ok() || !r.v.ptr) return s.ok() ? Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", "v is missing"} : s;
  Prepared p;
  if (!(s = prepare(r, p, true)).ok()) return s;
  const int dev = r.q.device;
  const std::size_t rowsQ = static_cast<std::size_t>(r.batch) * r.heads * r.seqQ;

  AttentionResult res;
  // Copies into `res` and reads of the request may be in flight until the final synchronisation:
  // a failure before it still waits for them.
  DrainOnFailure drain;
  DeviceLayout dl;
  if (r.sparse) {
    if (!(s = layout_on_device(r, p, dl, res.offsets, res.indices, res.flags)).ok()) return s;
    p.fwd.layoutOffsets = dl.offsets.as<const std::int32_t>();
    p.fwd.layoutIndices = dl.indices.as<const std::int32_t>();
    p.fwd.layoutFlags = dl.flags.as<const std::uint8_t>();
  }

  Owned output, lse, thresholds, kept, counts;
  if (!(s = output.alloc(elements(r, false) * 4, dev)).ok() || !(s = kept.alloc(rowsQ * 4, dev)).ok() || !(s = counts.alloc(16, dev)).ok()) return s;
  if (r.returnLse && !(s = lse.alloc(rowsQ * 4, dev)).ok()) return s;
  const bool topK = r.topK > 0 || r.topKRatio > 0;
  if (topK || r.returnThresholds) {
    if (!(s = thresholds.alloc(rowsQ * 4, dev)).ok()) return s;
  }
  if (topK) {
    PSA_TRY(attention_topk_thresholds(p.fwd, p.type, r.topK, r.topKRatio, thresholds.as<float>(), launch_stream()), "computing the top-k thresholds");
    p.fwd.threshold = thresholds.as<const float>();
  } else if (r.returnThresholds) {
    // Without top-k every row keeps all its allowed keys: tau = -inf, as the contract says.
    PSA_LAUNCH(fill_kernel, grid_for(rowsQ, kThreads), kThreads, 0, launch_stream())(thresholds.as<float>(), rowsQ, -INFINITY);
    PSA_TRY(cudaGetLastError(), "filling the thresholds");
  }
  p.fwd.o = output.as<float>();
  p.fwd.lse = r.returnLse ? lse.as<float>() : nullptr;
  p.fwd.keptCounts = kept.as<int>();
  PSA_TRY(attention_forward(p.fwd, p.type, launch_stream()), "launching the attention kernel");
  PSA_TRY(cudaMemsetAsync(counts.as<void>(), 0, 16, launch_stream()), "counting kept keys");
  PSA_LAUNCH(count_rows_kernel, grid_for(rowsQ, kThreads), kThreads, 0, launch_stream())(kept.as<const int>(), rowsQ, counts.as<unsigned long long>());
  PSA_TRY(cudaGetLastError(), "counting kept keys");
  unsigned long long totals[2] = {0, 0};
  PSA_TRY(cudaMemcpyAsync(totals, counts.as<void>(), 16, cudaMemcpyDeviceToHost, launch_stream()), "counting kept keys");
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "running the attention kernels");
  drain.done();
  res.keptPairs = static_cast<double>(totals[0]);
  res.emptyRows = static_cast<double>(totals[1]);

  res.output = output.release();
  if (r.returnLse) res.lse = lse.release();
  if (r.returnThresholds) res.thresholds = thresholds.release();
  out = std::move(res);
  return Status::success();
}

Status build_layout(const AttentionRequest& r, std::vector<std::int32_t>& offsets, std::vector<std::int32_t>& indices, std::vector<std::uint8_t>& flags) {
  Status s = check_request(r);
  if (!s.ok()) return s;
  if (!r.sparse || r.hasLayout) return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", "nothing to select"};
  Prepared p;
  if (!(s = prepare(r, p, false)).ok()) return s;
  DeviceLayout dl;
  DrainOnFailure drain;
  if (!(s = layout_on_device(r, p, dl, offsets, indices, flags)).ok()) return s;
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "building the block layout");
  drain.done();
  return Status::success();
}

}  // namespace psa::gpu
