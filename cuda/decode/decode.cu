// Host orchestration of the decode kernels (decode_api.h) on the calling thread's stream:
// append (scatter, then the touched pages' metadata), one step (page estimates, plan, pages
// read, split-KV attention, LSE combine: launched back to back, one wait for the result), and
// the merge.
// A step's temporaries are carved from the cache's workspace; on failure the outputs (and a
// workspace grown for the step) are freed.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>

#include "../convert.cuh"
#include "../device_buffer.h"
#include "../cuda_compat.h"
#include "../runtime_status.h"
#include "append_kernel.cuh"
#include "attention_kernel.cuh"
#include "combine_kernel.cuh"
#include "decode_api.h"
#include "estimate_kernel.cuh"
#include "plan_kernel.cuh"
#include "topk_kernel.cuh"
#include "traits.h"

namespace psa::gpu {
namespace {

using namespace decode;

int multiprocessors(int device) {
  static std::mutex mutex;
  static std::vector<int> known;
  std::lock_guard<std::mutex> g(mutex);
  if (static_cast<int>(known.size()) <= device) known.resize(device + 1, 0);
  if (!known[device]) {
    cudaDeviceProp prop{};
    known[device] = cudaGetDeviceProperties(&prop, device) == cudaSuccess && prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    cudaGetLastError();
  }
  return known[device];
}

PoolView view_of(const PoolBuffers& pool) {
  PoolView v;
  v.keys = static_cast<const std::uint16_t*>(pool.keys.ptr);
  v.values = static_cast<const std::uint16_t*>(pool.values.ptr);
  v.meta = static_cast<const float*>(pool.meta.ptr);
  v.kvHeads = pool.kvHeads;
  v.pageSize = pool.pageSize;
  v.headDim = pool.headDim;
  return v;
}

template <typename T, typename In>
Status launch_append(const AppendParams& a) {
  const std::size_t n = static_cast<std::size_t>(a.sequences) * a.kvHeads * a.n * a.headDim;
  PSA_LAUNCH((append_tokens_kernel<T, In>), grid_for(n, kThreads), kThreads, 0, launch_stream())(a);
  PSA_TRY(cudaGetLastError(), "launching the cache append");
  const std::size_t m = static_cast<std::size_t>(a.touchedCount) * a.kvHeads * a.headDim;
  PSA_LAUNCH(page_metadata_kernel<T>, grid_for(m, kThreads), kThreads, 0, launch_stream())(a);
  return status_of(cudaGetLastError(), "launching the page metadata update");
}

template <typename T>
Status launch_append_from(const AppendParams& a, DType kType) {
  switch (kType) {
    case DType::F32: return launch_append<T, float>(a);
    case DType::F16: return launch_append<T, __half>(a);
    case DType::BF16: return launch_append<T, __nv_bfloat16>(a);
  }
  return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", "unknown input type"};
}

template <typename T, int Poly>
Status launch_attention(const StepParams& p, dim3 grid) {
  const std::size_t smem = attention_shared_bytes(p.pool.pageSize, p.pool.headDim);
  PSA_TRY(cudaFuncSetAttribute(split_attention_kernel<T, Poly>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), "configuring the decode kernel");
  PSA_LAUNCH((split_attention_kernel<T, Poly>), grid, kThreads, smem, launch_stream())(p);
  return status_of(cudaGetLastError(), "launching the decode kernel");
}

template <typename T>
Status launch_step(const StepParams& p, int* pagesRead, float* thresholds) {
  if (p.estimates) {
    const dim3 grid(static_cast<unsigned>((p.maxPages + kThreads - 1) / kThreads), static_cast<unsigned>(p.batch * p.pool.kvHeads));
    PSA_LAUNCH(page_estimates_kernel<T>, grid, kThreads, 0, launch_stream())(p);
    PSA_TRY(cudaGetLastError(), "launching the page estimates");
  }
  const std::size_t planSmem = plan_shared_bytes(p.maxPages);
  PSA_TRY(cudaFuncSetAttribute(plan_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(planSmem)), "configuring the page plan");
  const unsigned units = static_cast<unsigned>(p.rows() / (p.shareAcrossGroup ? p.group() : 1));
  PSA_LAUNCH(plan_kernel<T>, units, kPlanThreads, planSmem, launch_stream())(p);
  PSA_TRY(cudaGetLastError(), "launching the page plan");
  PSA_LAUNCH(pages_read_kernel, grid_for(static_cast<std::size_t>(p.batch) * p.pool.kvHeads * p.maxPages, kThreads), kThreads, 0, launch_stream())(p, pagesRead);
  PSA_TRY(cudaGetLastError(), "counting the pages read");
  if (thresholds) {
    PSA_LAUNCH(topk_threshold_kernel<T>, static_cast<unsigned>(p.rows()), kThreads, 0, launch_stream())(p, thresholds);
    PSA_TRY(cudaGetLastError(), "launching the top-k thresholds");
  }
  const unsigned tiles = static_cast<unsigned>((p.group() * p.m + kTileRows - 1) / kTileRows);
  const dim3 grid(static_cast<unsigned>(p.splits), tiles, static_cast<unsigned>(p.batch * p.pool.kvHeads));
  if (p.polyDegree == 0) return launch_attention<T, 0>(p, grid);
  if (p.polyDegree == 3) return launch_attention<T, 3>(p, grid);  // the default degree, unrolled exactly
  return launch_attention<T, 8>(p, grid);                         // higher coefficients are zero-padded
}

Status combine(const float* const* outputs, const float* const* lses, int parts, long long rows, int headDim, float* out, float* lse) {
  const unsigned blocks = static_cast<unsigned>(std::min<long long>(4096, (rows + kWarps - 1) / kWarps));
  PSA_LAUNCH(lse_combine_kernel, std::max(1u, blocks), kThreads, 0, launch_stream())(outputs, lses, parts, rows, headDim, out, lse);
  return status_of(cudaGetLastError(), "launching the LSE combine");
}

// Offsets of a step's temporaries in its workspace, each on a 256-byte boundary.
struct WorkspaceLayout {
  std::size_t bytes = 0;
  std::size_t take(std::size_t n) {
    const std::size_t offset = (bytes + 255) / 256 * 256;
    bytes = offset + n;
    return offset;
  }
};

Status invalid(const char* what) { return Status{static_cast<int>(cudaErrorInvalidValue), "cudaErrorInvalidValue", what}; }

}  // namespace

Status alloc_pool(PoolBuffers& pool) {
  const std::size_t elements = static_cast<std::size_t>(pool.pages) * pool.kvHeads * pool.pageSize * pool.headDim;
  const std::size_t metaBytes = static_cast<std::size_t>(pool.pages) * pool.kvHeads * kMetaFields * pool.headDim * sizeof(float);
  Owned keys, values, meta;
  const int dev = pool.keys.device;
  Status s;
  if (!(s = keys.alloc(elements * 2, dev)).ok() || !(s = values.alloc(elements * 2, dev)).ok() || !(s = meta.alloc(metaBytes, dev)).ok()) return s;
  // Zeroed so that a page's unused slots never hold NaN patterns the kernels could read.
  PSA_TRY(cudaMemsetAsync(keys.as<void>(), 0, elements * 2, launch_stream()), "clearing the cache");
  PSA_TRY(cudaMemsetAsync(values.as<void>(), 0, elements * 2, launch_stream()), "clearing the cache");
  PSA_TRY(cudaMemsetAsync(meta.as<void>(), 0, metaBytes, launch_stream()), "clearing the cache");
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "clearing the cache");
  pool.keys = keys.release();
  pool.values = values.release();
  pool.meta = meta.release();
  return Status::success();
}

void free_pool(PoolBuffers& pool) {
  free_buffer(pool.keys);
  free_buffer(pool.values);
  free_buffer(pool.meta);
}

Status run_append(const AppendRequest& r) {
  const PoolBuffers& pool = r.pool;
  if (r.sequences < 1 || r.n < 1 || r.slots.size() != static_cast<std::size_t>(r.sequences) * r.n || r.touched.size() != r.touchedKeys.size()) {
    return invalid("the cache append has an invalid shape");
  }
  const int dev = pool.keys.device;
  PSA_TRY(cudaSetDevice(dev), "selecting the CUDA device");
  Owned slots, touched, touchedKeys;
  Status s;
  if (!(s = upload(slots, r.slots, dev, "copying decode tables to the device")).ok() || !(s = upload(touched, r.touched, dev, "copying decode tables to the device")).ok() || !(s = upload(touchedKeys, r.touchedKeys, dev, "copying decode tables to the device")).ok()) return s;
  AppendParams a;
  a.keys = static_cast<std::uint16_t*>(pool.keys.ptr);
  a.values = static_cast<std::uint16_t*>(pool.values.ptr);
  a.meta = static_cast<float*>(pool.meta.ptr);
  a.kvHeads = pool.kvHeads;
  a.pageSize = pool.pageSize;
  a.headDim = pool.headDim;
  a.k = r.k.ptr;
  a.v = r.v.ptr;
  a.sequences = r.sequences;
  a.n = r.n;
  a.slots = slots.as<const std::int32_t>();
  a.touched = touched.as<const std::int32_t>();
  a.touchedKeys = touchedKeys.as<const std::int32_t>();
  a.touchedCount = static_cast<int>(r.touched.size());
  s = pool.type == DType::BF16 ? launch_append_from<__nv_bfloat16>(a, r.kType) : launch_append_from<__half>(a, r.kType);
  if (!s.ok()) return s;
  return status_of(cudaStreamSynchronize(launch_stream()), "appending to the cache");
}

Status run_decode(const DecodeRequest& r, const Buffer& workspace, DecodeResult& out) {
  const PoolBuffers& pool = r.pool;
  const int G = r.heads / std::max(1, pool.kvHeads);
  if (r.batch < 1 || r.m < 1 || r.heads < 1 || r.heads % pool.kvHeads != 0 || G > kMaxGroup || pool.headDim > 256 || pool.pageSize > kMaxPageSize ||
      r.lengths.size() != static_cast<std::size_t>(r.batch) || r.pageTable.size() != static_cast<std::size_t>(r.batch) * r.tableStride ||
      (r.qType != DType::F32 && r.qType != pool.type)) {
    return invalid("the decode request has an invalid shape or element type");
  }
  int maxLength = 0;
  for (int L : r.lengths) maxLength = std::max(maxLength, L);
  const int maxPages = (maxLength + pool.pageSize - 1) / pool.pageSize;
  if (maxPages < 1 || maxPages > std::min(r.tableStride, kMaxPlanPages)) return invalid("the decode request's sequences are empty or longer than the page plan handles");
  if (static_cast<long long>(r.batch) * pool.kvHeads > 65535 || attention_shared_bytes(pool.pageSize, pool.headDim) > kMaxSharedBytes) {
    return invalid("the decode request exceeds the launch grid or the shared memory of the decode kernel");
  }
  const int dev = pool.keys.device;
  PSA_TRY(cudaSetDevice(dev), "selecting the CUDA device");
  const long long rows = static_cast<long long>(r.batch) * r.heads * r.m;
  const std::size_t D = pool.headDim;
  const std::size_t qElements = static_cast<std::size_t>(rows) * D;

  // Splits: enough CTAs for two waves of the device, each with at least one page.
  const long long ctasPerSplit = static_cast<long long>(r.batch) * pool.kvHeads * ((G * r.m + kTileRows - 1) / kTileRows);
  const long long wanted = std::max<long long>(1, (2LL * multiprocessors(dev) + ctasPerSplit - 1) / ctasPerSplit);
  const int pagesPerSplit = static_cast<int>((maxPages + std::min<long long>(wanted, maxPages) - 1) / std::min<long long>(wanted, maxPages));
  const int splits = (maxPages + pagesPerSplit - 1) / pagesPerSplit;
  const int unitHeads = r.shareAcrossGroup ? G : 1;
  const std::size_t units = static_cast<std::size_t>(rows / unitHeads);
  const bool topK = r.topK > 0 || r.topKRatio > 0;

  // Every temporary carved from one workspace, sized for the next power of two of the pages and
  // the most splits a step of this shape takes: a sequence growing one token a step regrows the
  // workspace at each doubling of its pages, and keeps its addresses in between.
  std::size_t pagesCap = 1;
  while (pagesCap < static_cast<std::size_t>(maxPages)) pagesCap *= 2;
  pagesCap = std::min<std::size_t>(pagesCap, kMaxPlanPages);
  const std::size_t splitsCap = static_cast<std::size_t>(std::min<long long>(wanted, static_cast<long long>(pagesCap)));
  WorkspaceLayout at;
  const std::size_t tableAt = at.take(r.pageTable.size() * 4), lengthsAt = at.take(r.lengths.size() * 4);
  const std::size_t q16At = at.take(r.qType == DType::F32 ? qElements * 2 : 0);
  const std::size_t flagsAt = at.take(static_cast<std::size_t>(rows) * pagesCap), droppedAt = at.take(rows * 4), visitedAt = at.take(rows * 4);
  const std::size_t estimatesAt = at.take(r.choice ? static_cast<std::size_t>(rows) * pagesCap * 4 : 0);
  const std::size_t massesAt = at.take(r.choice ? units * unitHeads * pagesCap * 4 : 0);
  const std::size_t partOutAt = at.take(splitsCap * qElements * 4), partLseAt = at.take(splitsCap * rows * 4), partKeptAt = at.take(splitsCap * rows * 4);
  const std::size_t pointersAt = at.take(2 * splitsCap * sizeof(float*)), counterAt = at.take(4);
  const std::size_t thresholdsAt = at.take(topK ? rows * 4 : 0);

  Owned grown, output, lse;
  Status s;
  unsigned char* base = static_cast<unsigned char*>(workspace.ptr);
  if (!base || workspace.bytes < at.bytes) {
    if (!(s = grown.alloc((at.bytes + 255) / 256 * 256, dev)).ok()) return s;
    base = grown.as<unsigned char>();
  }
  auto carved = [base](std::size_t offset) { return static_cast<void*>(base + offset); };
  const auto table = static_cast<std::int32_t*>(carved(tableAt)), lengths = static_cast<std::int32_t*>(carved(lengthsAt));
  PSA_TRY(cudaMemcpyAsync(table, r.pageTable.data(), r.pageTable.size() * 4, cudaMemcpyHostToDevice, launch_stream()), "copying decode tables to the device");
  PSA_TRY(cudaMemcpyAsync(lengths, r.lengths.data(), r.lengths.size() * 4, cudaMemcpyHostToDevice, launch_stream()), "copying decode tables to the device");
  const std::uint16_t* q = static_cast<const std::uint16_t*>(r.q.ptr);
  if (r.qType == DType::F32) {
    void* q16 = carved(q16At);
    if (pool.type == DType::BF16) {
      PSA_LAUNCH(narrow_f32_kernel<__nv_bfloat16>, grid_for(qElements, kThreads), kThreads, 0, launch_stream())(static_cast<const float*>(r.q.ptr), static_cast<__nv_bfloat16*>(q16), qElements);
    } else {
      PSA_LAUNCH(narrow_f32_kernel<__half>, grid_for(qElements, kThreads), kThreads, 0, launch_stream())(static_cast<const float*>(r.q.ptr), static_cast<__half*>(q16), qElements);
    }
    PSA_TRY(cudaGetLastError(), "converting the queries");
    q = static_cast<const std::uint16_t*>(q16);
  }
  // The result outlives the step: the only memory a steady-state step takes from the pool.
  if (!(s = output.alloc(qElements * 4, dev)).ok()) return s;
  if (r.returnLse && !(s = lse.alloc(rows * 4, dev)).ok()) return s;
  const auto flags = static_cast<std::uint8_t*>(carved(flagsAt));
  const auto dropped = static_cast<float*>(carved(droppedAt));
  const auto visited = static_cast<std::int32_t*>(carved(visitedAt));
  const auto estimates = static_cast<float*>(carved(estimatesAt)), masses = static_cast<float*>(carved(massesAt));
  const auto partOut = static_cast<float*>(carved(partOutAt)), partLse = static_cast<float*>(carved(partLseAt));
  const auto partKept = static_cast<std::int32_t*>(carved(partKeptAt));
  const auto pointers = static_cast<const float**>(carved(pointersAt));
  const auto counter = static_cast<int*>(carved(counterAt));
  const auto thresholds = static_cast<float*>(carved(thresholdsAt));

  StepParams p;
  p.pool = view_of(pool);
  p.q = q;
  p.batch = r.batch;
  p.heads = r.heads;
  p.m = r.m;
  p.pageTable = table;
  p.tableStride = r.tableStride;
  p.lengths = lengths;
  p.maxPages = maxPages;
  p.scale = r.scale;
  p.windowLeft = r.windowLeft;
  p.windowRight = r.windowRight;
  p.globalTokens = r.globalTokens;
  p.sparse = r.sparse;
  p.choice = static_cast<Choice>(r.choice);
  p.choiceValue = r.choiceValue;
  p.minBlocks = r.minBlocks;
  p.maxBlocks = r.maxBlocks;
  p.estimate = static_cast<Estimate>(r.estimate);
  p.shareAcrossGroup = r.shareAcrossGroup;
  p.topK = r.topK;
  p.topKRatio = r.topKRatio;
  p.thresholds = topK ? thresholds : nullptr;
  p.polyDegree = r.polyDegree;
  std::memcpy(p.polyCoefficients, r.polyCoefficients, sizeof p.polyCoefficients);
  p.pageFlags = flags;
  p.dropped = dropped;
  p.visited = visited;
  p.estimates = r.choice ? estimates : nullptr;
  p.masses = masses;
  p.splits = splits;
  p.pagesPerSplit = pagesPerSplit;
  p.partOutput = partOut;
  p.partLse = partLse;
  p.partKept = partKept;

  // The split parts as the combine kernel reads them: pointer tables built on the host.
  std::vector<const float*> partTable(2 * splits);
  for (int i = 0; i < splits; i++) {
    partTable[i] = partOut + i * qElements;
    partTable[splits + i] = partLse + i * rows;
  }
  PSA_TRY(cudaMemcpyAsync(pointers, partTable.data(), partTable.size() * sizeof(float*), cudaMemcpyHostToDevice, launch_stream()), "copying the split table");
  PSA_TRY(cudaMemsetAsync(counter, 0, 4, launch_stream()), "counting the pages read");
  float* tau = topK ? thresholds : nullptr;
  s = pool.type == DType::BF16 ? launch_step<__nv_bfloat16>(p, counter, tau) : launch_step<__half>(p, counter, tau);
  if (!s.ok()) return s;
  const float* const* parts = pointers;
  if (!(s = combine(parts, parts + splits, splits, rows, static_cast<int>(D), output.as<float>(), r.returnLse ? lse.as<float>() : nullptr)).ok()) return s;

  DecodeResult res;
  res.maxPages = maxPages;
  std::vector<std::int32_t> kept(static_cast<std::size_t>(splits) * rows);
  res.visited.resize(rows);
  res.dropped.resize(rows);
  int pagesRead = 0;
  PSA_TRY(cudaMemcpyAsync(kept.data(), partKept, kept.size() * 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the decode counts");
  PSA_TRY(cudaMemcpyAsync(res.visited.data(), visited, rows * 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the decode counts");
  PSA_TRY(cudaMemcpyAsync(res.dropped.data(), dropped, rows * 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the decode counts");
  PSA_TRY(cudaMemcpyAsync(&pagesRead, counter, 4, cudaMemcpyDeviceToHost, launch_stream()), "reading the decode counts");
  if (r.returnPages) {
    res.pageFlags.resize(static_cast<std::size_t>(rows) * maxPages);
    PSA_TRY(cudaMemcpyAsync(res.pageFlags.data(), flags, res.pageFlags.size(), cudaMemcpyDeviceToHost, launch_stream()), "reading the decode pages");
  }
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "running the decode kernels");
  res.kept.assign(rows, 0);
  for (int i = 0; i < splits; i++) {
    for (long long row = 0; row < rows; row++) res.kept[row] += kept[i * rows + row];
  }
  res.pagesRead = pagesRead;
  res.workspace = grown.release();
  res.output = output.release();
  if (r.returnLse) res.lse = lse.release();
  out = std::move(res);
  return Status::success();
}

Status run_merge(const std::vector<Buffer>& outputs, const std::vector<Buffer>& lses, long long rows, int headDim, Buffer& outOutput, Buffer& outLse) {
  if (outputs.empty() || outputs.size() != lses.size() || rows < 1 || headDim < 1) return invalid("mergeAttention: invalid parts");
  const int dev = outputs[0].device;
  PSA_TRY(cudaSetDevice(dev), "selecting the CUDA device");
  const int parts = static_cast<int>(outputs.size());
  std::vector<const float*> table(2 * parts);
  for (int i = 0; i < parts; i++) {
    table[i] = static_cast<const float*>(outputs[i].ptr);
    table[parts + i] = static_cast<const float*>(lses[i].ptr);
  }
  Owned pointers, output, lse;
  Status s;
  if (!(s = pointers.alloc(table.size() * sizeof(float*), dev)).ok() || !(s = output.alloc(rows * headDim * 4, dev)).ok() || !(s = lse.alloc(rows * 4, dev)).ok()) return s;
  PSA_TRY(cudaMemcpyAsync(pointers.as<void>(), table.data(), table.size() * sizeof(float*), cudaMemcpyHostToDevice, launch_stream()), "copying the part table");
  const float* const* t = pointers.as<const float* const>();
  if (!(s = combine(t, t + parts, parts, rows, headDim, output.as<float>(), lse.as<float>())).ok()) return s;
  PSA_TRY(cudaStreamSynchronize(launch_stream()), "merging attention parts");
  outOutput = output.release();
  outLse = lse.release();
  return Status::success();
}

}  // namespace psa::gpu
