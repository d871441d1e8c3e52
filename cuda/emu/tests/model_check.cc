// The CPU model's own checks, kernel against host function: fragment layouts of every
// primitive, shuffles and votes, cp.async delivery, the Tensor Core matmul, and that each
// class of misuse is reported with the thread and line. Prints "PASS <name>" or
// "FAIL <name>: <why>" per check; exits 1 if any failed.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../../checks/mma_matmul.h"
#include "../../cuda_compat.h"
#include "../../device_api.h"
#include "../../primitives.cuh"

using namespace psa::gpu;

namespace {

int failures = 0;

void report(const std::string& name, bool ok, const std::string& why = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), ok ? "" : ": ", ok ? "" : why.c_str());
  if (!ok) failures++;
}

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t n;
  explicit DeviceArray(std::size_t count) : n(count) { cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(T)); }
  ~DeviceArray() { cudaFree(ptr); }
  void put(const std::vector<T>& h) { cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
};

std::uint16_t bf16_bits(float x) {
  __nv_bfloat16 b = __float2bfloat16_rn(x);
  std::uint16_t u;
  std::memcpy(&u, &b, 2);
  return u;
}
std::uint16_t f16_bits(float x) {
  __half h = __float2half_rn(x);
  std::uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

// ---- mma fragment layout: each lane packs its fragments from full matrices by the documented maps.
__global__ void mma_layout_kernel(const float* A, const float* B, float* D) {
  const int lane = threadIdx.x;
  std::uint32_t a[4], b[2];
  float c[4] = {0, 0, 0, 0}, d[4];
  std::uint16_t ah[8], bh[4];
  for (int i = 0; i < 8; i++) ah[i] = bf16_bits(A[twin::a_row(lane, i) * 16 + twin::a_col(lane, i)]);
  for (int i = 0; i < 4; i++) bh[i] = bf16_bits(B[twin::b_row(lane, i) * 8 + twin::b_col(lane, i)]);
  for (int r = 0; r < 4; r++) a[r] = ah[2 * r] | (std::uint32_t(ah[2 * r + 1]) << 16);
  for (int r = 0; r < 2; r++) b[r] = bh[2 * r] | (std::uint32_t(bh[2 * r + 1]) << 16);
  mma_m16n8k16<MmaType::BF16>(d, a, b, c);
  for (int i = 0; i < 4; i++) D[twin::c_row(lane, i) * 8 + twin::c_col(lane, i)] = d[i];
}

void check_mma_layout() {
  std::vector<float> A(256), B(128);
  for (int i = 0; i < 256; i++) A[i] = static_cast<float>((i * 7) % 13) - 6;  // small integers: exact in bf16 and in sums
  for (int i = 0; i < 128; i++) B[i] = static_cast<float>((i * 5) % 11) - 5;
  DeviceArray<float> dA(256), dB(128), dD(128);
  dA.put(A);
  dB.put(B);
  PSA_LAUNCH(mma_layout_kernel, 1, 32, 0, cudaStreamPerThread)(dA.ptr, dB.ptr, dD.ptr);
  const cudaError_t e = cudaGetLastError();
  auto D = dD.get();
  std::string why = e ? cudaGetErrorString(e) : "";
  for (int r = 0; r < 16 && why.empty(); r++)
    for (int c = 0; c < 8 && why.empty(); c++) {
      float want = 0;
      for (int k = 0; k < 16; k++) want += A[r * 16 + k] * B[k * 8 + c];
      if (D[r * 8 + c] != want) why = "D[" + std::to_string(r) + "][" + std::to_string(c) + "] = " + std::to_string(D[r * 8 + c]) + ", want " + std::to_string(want);
    }
  report("mma.m16n8k16 fragment layout (A, B, C maps)", why.empty(), why);
}

// ---- ldmatrix: lane l receives row l/4, elements 2(l%4), 2(l%4)+1 of each matrix (the column with .trans).
template <int Num, bool Trans>
__global__ void ldmatrix_kernel(std::uint32_t* out) {
  PSA_DYNAMIC_SHARED(std::uint16_t, s);
  const int lane = threadIdx.x;
  for (int i = lane; i < Num * 64; i += 32) s[i] = static_cast<std::uint16_t>(i);  // matrix m, row r, col c holds m*64 + r*8 + c
  __syncthreads();
  std::uint32_t r[Num];
  ldmatrix<Num, Trans>(r, s + (lane % (8 * Num)) * 8);  // row addresses: matrix lane/8, row lane%8
  for (int m = 0; m < Num; m++) out[lane * 4 + m] = r[m];
}

template <int Num, bool Trans>
void check_ldmatrix() {
  DeviceArray<std::uint32_t> out(128);
  PSA_LAUNCH((ldmatrix_kernel<Num, Trans>), 1, 32, Num * 64 * 2, cudaStreamPerThread)(out.ptr);
  const cudaError_t e = cudaGetLastError();
  auto h = out.get();
  std::string why = e ? cudaGetErrorString(e) : "";
  for (int lane = 0; lane < 32 && why.empty(); lane++)
    for (int m = 0; m < Num && why.empty(); m++) {
      const int row = lane / 4, col = 2 * (lane % 4);
      const std::uint32_t lo = Trans ? m * 64 + col * 8 + row : m * 64 + row * 8 + col;
      const std::uint32_t hi = Trans ? m * 64 + (col + 1) * 8 + row : m * 64 + row * 8 + col + 1;
      if (h[lane * 4 + m] != (lo | (hi << 16))) why = "lane " + std::to_string(lane) + " matrix " + std::to_string(m) + " got wrong elements";
    }
  report(std::string("ldmatrix.x") + std::to_string(Num) + (Trans ? ".trans" : "") + " fragment layout", why.empty(), why);
}

// ---- shuffles and votes against their definitions.
__global__ void warp_ops_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  const int v = lane * 10 + static_cast<int>(threadIdx.x / 32);
  int* o = out + threadIdx.x * 6;
  o[0] = __shfl_sync(0xffffffffu, v, 5);
  o[1] = __shfl_xor_sync(0xffffffffu, v, 3);
  o[2] = __shfl_down_sync(0xffffffffu, v, 4, 16);
  o[3] = __shfl_up_sync(0xffffffffu, v, 1);
  o[4] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  o[5] = __any_sync(0xffffffffu, lane == 31) * 2 + __all_sync(0xffffffffu, lane < 31);
}

void check_warp_ops() {
  DeviceArray<int> out(64 * 6);
  PSA_LAUNCH(warp_ops_kernel, 1, 64, 0, cudaStreamPerThread)(out.ptr);
  auto h = out.get();
  unsigned ballot = 0;
  for (int l = 0; l < 32; l++)
    if (l % 3 == 0) ballot |= 1u << l;
  std::string why = cudaGetLastError() ? "launch failed" : "";
  for (int t = 0; t < 64 && why.empty(); t++) {
    const int lane = t % 32, w = t / 32;
    const int* o = &h[t * 6];
    const int down = (lane % 16) + 4 < 16 ? lane + 4 : lane;
    const int up = lane >= 1 ? lane - 1 : lane;
    if (o[0] != 50 + w || o[1] != (lane ^ 3) * 10 + w || o[2] != down * 10 + w || o[3] != up * 10 + w || static_cast<unsigned>(o[4]) != ballot || o[5] != 2) {
      why = "thread " + std::to_string(t) + " got a wrong shuffle or vote result";
    }
  }
  report("shuffles (idx, xor, down width 16, up) and votes", why.empty(), why);
}

// ---- cp.async delivers at the wait, not before.
__global__ void cp_async_kernel(const float* src, float* out) {
  PSA_DYNAMIC_SHARED(float, s);
  s[threadIdx.x * 4] = -1;
  cp_async_16(s + threadIdx.x * 4, src + threadIdx.x * 4);
  cp_async_commit();
  out[threadIdx.x * 2] = s[threadIdx.x * 4];  // before the wait: poison (NaN) in this model, never the data
  cp_async_wait<0>();
  out[threadIdx.x * 2 + 1] = s[threadIdx.x * 4];
}

void check_cp_async() {
  std::vector<float> src(128);
  for (int i = 0; i < 128; i++) src[i] = static_cast<float>(i);
  DeviceArray<float> d(128), out(64);
  d.put(src);
  PSA_LAUNCH(cp_async_kernel, 1, 32, 128 * 4, cudaStreamPerThread)(d.ptr, out.ptr);
  auto h = out.get();
  bool ok = cudaGetLastError() == cudaSuccess;
  for (int t = 0; t < 32; t++) ok = ok && std::isnan(h[t * 2]) && h[t * 2 + 1] == static_cast<float>(t * 4);
  report("cp.async destination is garbage until cp.async.wait_group, then holds the data", ok);
}

// ---- the Tensor Core matmul against a host product of the same rounded inputs.
void check_matmul(MmaType type, bool b_transposed, int M, int N, int K) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<std::uint16_t> a(static_cast<std::size_t>(M) * K), b(static_cast<std::size_t>(K) * N);
  std::vector<float> af(a.size()), bf(b.size());
  auto enc = [&](float x) { return type == MmaType::BF16 ? bf16_bits(x) : f16_bits(x); };
  for (std::size_t i = 0; i < a.size(); i++) af[i] = twin::to_float(a[i] = enc(dist(rng)), type);
  for (std::size_t i = 0; i < b.size(); i++) bf[i] = twin::to_float(b[i] = enc(dist(rng)), type);
  DeviceArray<std::uint16_t> da(a.size()), db(b.size());
  DeviceArray<float> dc(static_cast<std::size_t>(M) * N);
  da.put(a);
  db.put(b);
  const cudaError_t e = mma_matmul(type, b_transposed, da.ptr, db.ptr, dc.ptr, M, N, K, cudaStreamPerThread);
  auto c = dc.get();
  double err = 0, norm = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double want = 0;
      for (int k = 0; k < K; k++) want += double(af[static_cast<std::size_t>(i) * K + k]) * (b_transposed ? bf[static_cast<std::size_t>(k) * N + j] : bf[static_cast<std::size_t>(j) * K + k]);
      err += (c[static_cast<std::size_t>(i) * N + j] - want) * (c[static_cast<std::size_t>(i) * N + j] - want);
      norm += want * want;
    }
  const double rel = std::sqrt(err / norm);
  char name[128];
  std::snprintf(name, sizeof name, "mma matmul %s %s %dx%dx%d (rel. error %.1e)", type == MmaType::BF16 ? "bf16" : "f16", b_transposed ? "B[KxN] via ldmatrix.trans" : "B[NxK]", M, N, K, rel);
  report(name, e == cudaSuccess && rel < 1e-6, e ? cudaGetErrorString(e) : "error too large");
}

// ---- the conversion kernels behind tensor upload/download, against the host roundings.
void check_conversions() {
  std::vector<float> x(5000);  // a few blocks: sanitizer runs start an OS thread per CUDA thread
  for (std::size_t i = 0; i < x.size(); i++) x[i] = std::ldexp(static_cast<float>(i % 977) - 488.25f, static_cast<int>(i % 40) - 20);
  for (DType type : {DType::F16, DType::BF16}) {
    Buffer buf;
    Status s = alloc_buffer(buf, x.size() * 2, 0);
    if (s.ok()) s = upload_f32(x.data(), x.size(), type, buf);
    std::vector<float> back(x.size());
    if (s.ok()) s = download_f32(buf, type, x.size(), back.data());
    free_buffer(buf);
    bool ok = s.ok();
    for (std::size_t i = 0; ok && i < x.size(); i++) {
      const float want = type == DType::F16 ? __half2float(__float2half_rn(x[i])) : __bfloat162float(__float2bfloat16_rn(x[i]));
      ok = back[i] == want || (std::isnan(back[i]) && std::isnan(want));
    }
    report(std::string("upload/download conversion kernels, ") + (type == DType::F16 ? "float16" : "bfloat16"), ok, s.ok() ? "values differ" : s.message);
  }
}

// ---- misuse is reported, with the thread and the line.
__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 40) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}
__global__ void divergent_shuffle_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x % 2) v = __shfl_xor_sync(0xffffffffu, v, 1);
  else v = __shfl_xor_sync(0xffffffffu, v, 2);
  out[threadIdx.x] = v;
}
__global__ void misaligned_ldmatrix_kernel(std::uint32_t* out) {
  PSA_DYNAMIC_SHARED(std::uint16_t, s);
  for (int i = threadIdx.x; i < 256; i += 32) s[i] = 0;
  __syncthreads();
  std::uint32_t r[1];
  ldmatrix<1, false>(r, s + 1 + (threadIdx.x % 8) * 8);  // 2 bytes off a 16-byte boundary
  out[threadIdx.x] = r[0];
}
__global__ void partial_mask_kernel(int* out) { out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 0); }
__global__ void big_smem_kernel() {}

void expect_failure(const std::string& name, const std::function<void()>& launch, const std::string& needle) {
  launch();
  const cudaError_t e = cudaGetLastError();
  const std::string msg = e ? cudaGetErrorString(e) : "";
  report("reports " + name, e != cudaSuccess && msg.find(needle) != std::string::npos && msg.find("model_check.cc:") != std::string::npos,
         e ? "message was: " + msg : "no error reported");
}

void check_misuse() {
  DeviceArray<int> ints(64);
  DeviceArray<std::uint32_t> words(64);
  expect_failure("a divergent __syncthreads", [] { PSA_LAUNCH(divergent_barrier_kernel, 1, 64, 0, cudaStreamPerThread)(); }, "divergent __syncthreads");
  expect_failure("a divergent shuffle", [&] { PSA_LAUNCH(divergent_shuffle_kernel, 1, 32, 0, cudaStreamPerThread)(ints.ptr); }, "divergent warp collective");
  expect_failure("a misaligned ldmatrix", [&] { PSA_LAUNCH(misaligned_ldmatrix_kernel, 1, 32, 512, cudaStreamPerThread)(words.ptr); }, "misaligned ldmatrix");
  expect_failure("a partial warp mask", [&] { PSA_LAUNCH(partial_mask_kernel, 1, 32, 0, cudaStreamPerThread)(ints.ptr); }, "partial warp masks are not modeled");
  PSA_LAUNCH(big_smem_kernel, 1, 32, 64 * 1024, cudaStreamPerThread)();
  const cudaError_t e = cudaGetLastError();
  report("rejects dynamic shared memory over 48 KiB without cudaFuncSetAttribute", e == cudaErrorInvalidValue);
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep every line printed before a sanitizer abort
  check_mma_layout();
  check_ldmatrix<1, false>();
  check_ldmatrix<2, false>();
  check_ldmatrix<4, false>();
  check_ldmatrix<1, true>();
  check_ldmatrix<2, true>();
  check_ldmatrix<4, true>();
  check_warp_ops();
  check_cp_async();
  check_matmul(MmaType::BF16, false, 64, 64, 64);
  check_matmul(MmaType::BF16, true, 128, 64, 192);
  check_matmul(MmaType::F16, false, 64, 128, 128);
  check_matmul(MmaType::F16, true, 64, 64, 64);
  check_conversions();
  check_misuse();
  std::printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
