// The CUDA layer in a build without CUDA (nvcc not found, or PSA_CUDA=OFF): every device
// call answers why there is no device, so the addon still loads and reports it.
#include "attention/finite.h"
#include "attention_api.h"
#include "device_api.h"

namespace psa::gpu {
namespace {
Status not_built() {
  return Status{-1, "psaNotBuiltWithCuda",
                "this build of the addon has no CUDA kernels (nvcc was not found at build time, or PSA_CUDA=OFF); "
                "rebuild with the CUDA toolkit installed: npx psa build"};
}
}  // namespace

std::size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

Status device_unusable() { return Status::success(); }

RuntimeInfo query_runtime() {
  RuntimeInfo info;
  info.compiled = false;
  info.flavor = "none";
  info.error = not_built();
  return info;
}

Status alloc_buffer(Buffer&, std::size_t, int) { return not_built(); }
Status free_buffer(Buffer& buf) {
  buf = Buffer{};
  return Status::success();
}
Status upload_f32(const float*, std::size_t, DType, const Buffer&) { return not_built(); }
Status upload_raw16(const std::uint16_t*, std::size_t, const Buffer&) { return not_built(); }
Status download_f32(const Buffer&, DType, std::size_t, float*) { return not_built(); }
Status first_non_finite(const ValueCheck*, std::size_t count, float, long long* indices) {
  for (std::size_t c = 0; c < count; ++c) indices[c] = -1;
  return not_built();
}
Status run_attention(const AttentionRequest&, AttentionResult&) { return not_built(); }
Status build_layout(const AttentionRequest&, std::vector<std::int32_t>&, std::vector<std::int32_t>&, std::vector<std::uint8_t>&) { return not_built(); }

}  // namespace psa::gpu
