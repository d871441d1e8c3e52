// The decode entry points in a build without CUDA: every call reports that the kernels are absent.
#include "decode_api.h"

namespace psa::gpu {
namespace {
Status absent() { return Status{-1, "psaNotBuiltWithCuda", "this build of the addon has no CUDA kernels: rebuild with the CUDA toolkit installed (npx psa build)"}; }
}  // namespace

Status alloc_pool(PoolBuffers&) { return absent(); }
void free_pool(PoolBuffers&) {}
Status run_append(const AppendRequest&) { return absent(); }
Status run_decode(const DecodeRequest&, const Buffer&, DecodeResult&) { return absent(); }
Status run_merge(const std::vector<Buffer>&, const std::vector<Buffer>&, long long, int, Buffer&, Buffer&) { return absent(); }

}  // namespace psa::gpu
