// backward(q, k, v, dO, request): the addon side of the device backends' backward
// (lib/backends/device-backward.ts). The request is parsed and checked as attention()'s; what
// the backward adds is checked here: dO (q's shape), the forward's layout on sparse calls and
// its thresholds. No math here.
#include "backward.h"

#include <memory>
#include <string>

#include "../cuda/backward_api.h"
#include "addon_state.h"
#include "attention.h"
#include "device_tensor.h"
#include "host_array.h"
#include "promise_worker.h"

namespace psa::binding {
namespace {

class BackwardWorker : public PromiseWorker {
 public:
  BackwardWorker(Napi::Env env, gpu::BackwardRequest request, Inputs inputs, SharedMemory dO)
      : PromiseWorker(env, "psa:backward"), request_(std::move(request)), inputs_(std::move(inputs)), dO_(std::move(dO)) {}
  ~BackwardWorker() override {
    // Only what Result did not hand over.
    gpu::free_buffer(result_.dq);
    gpu::free_buffer(result_.dk);
    gpu::free_buffer(result_.dv);
  }

 protected:
  gpu::Status Run() override { return gpu::run_backward(request_, result_); }
  Napi::Value Result(Napi::Env env) override {
    const gpu::AttentionRequest& r = request_.problem;
    const std::size_t nq = static_cast<std::size_t>(r.batch) * r.heads * r.seqQ * r.headDim;
    const std::size_t nk = static_cast<std::size_t>(r.batch) * r.kvHeads * r.seqK * r.headDim;
    Napi::Object out = Napi::Object::New(env);
    out.Set("dq", DeviceTensor::Wrap(env, adopt(result_.dq), gpu::DType::F32, nq));
    out.Set("dk", DeviceTensor::Wrap(env, adopt(result_.dk), gpu::DType::F32, nk));
    out.Set("dv", DeviceTensor::Wrap(env, adopt(result_.dv), gpu::DType::F32, nk));
    return out;
  }

 private:
  gpu::BackwardRequest request_;
  Inputs inputs_;
  SharedMemory dO_;
  gpu::BackwardResult result_;
};

}  // namespace

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  gpu::BackwardRequest r;
  r.problem = parse_request(env, info[4]);
  const gpu::AttentionRequest& p = r.problem;
  if (p.sparse && !p.hasLayout) AddonState::of(env).raise(env, "option", "request.layout", "a sparse backward needs the forward's layout");
  if (p.headDim > 128) AddonState::of(env).raise(env, "shape", "request.headDim", "the backward kernels run head dims 1..128");
  Inputs in = attach_inputs(env, info, r.problem, true);
  const DeviceTensor& dO = DeviceTensor::from(env, info[3], "dO");
  if (dO.count() != static_cast<std::size_t>(p.batch) * p.heads * p.seqQ * p.headDim) AddonState::of(env).raise(env, "shape", "dO", "dO must have q's shape");
  if (dO.memory()->buffer().device != p.q.device) AddonState::of(env).raise(env, "option", "dO", "dO must be on q's device");
  r.dO = dO.memory()->buffer();
  r.dOType = dO.type();
  const Napi::Value tau = info[4].As<Napi::Object>().Get("thresholds");
  if (!tau.IsUndefined() && !tau.IsNull()) {
    r.thresholds = copy_host_array<float>(env, tau, napi_float32_array, "request.thresholds", "a Float32Array");
    if (r.thresholds.size() != static_cast<std::size_t>(p.batch) * p.heads * p.seqQ) AddonState::of(env).raise(env, "shape", "request.thresholds", "must hold one value per query row");
  }
  return PromiseWorker::Start(std::make_unique<BackwardWorker>(env, std::move(r), std::move(in), dO.memory()));
}

}  // namespace psa::binding
