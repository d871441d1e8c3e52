// Device work off the event loop: Run() executes on a libuv worker thread and returns a
// Status; the Promise resolves with Result() or rejects with the coded error for the Status.
//
// Built on the C async-work API rather than Napi::AsyncWorker so that completion can never
// throw: when a worker_thread is terminated with work in flight, Node still runs the
// completion, but JS can no longer run there, so settling the promise fails. That failure is
// swallowed (nobody is left to await the promise) and the worker's destructor frees whatever
// Run() made. A device latched unusable refuses the work before Run().
#pragma once

#include <napi.h>

#include <exception>
#include <memory>
#include <new>
#include <string>

#include "addon_state.h"

namespace psa::binding {

class PromiseWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name) : env_(env) {
    napi_value resource_name = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_promise(env, &deferred_, &promise_));
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name));
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_async_work(env, nullptr, resource_name, &PromiseWorker::Execute, &PromiseWorker::Complete, this, &work_));
  }
  PromiseWorker(const PromiseWorker&) = delete;
  PromiseWorker& operator=(const PromiseWorker&) = delete;
  virtual ~PromiseWorker() = default;

  // Queue the work and hand back its Promise (within the JS call that made the worker); the
  // worker deletes itself when it completes.
  static Napi::Value Start(std::unique_ptr<PromiseWorker> worker) {
    Napi::Env env = worker->env_;
    const Napi::Value promise(env, worker->promise_);
    NAPI_THROW_IF_FAILED(env, napi_queue_async_work(env, worker->work_), Napi::Value());
    worker.release();
    return promise;
  }

 protected:
  virtual gpu::Status Run() = 0;                   // worker thread: no JS here
  virtual Napi::Value Result(Napi::Env env) = 0;  // main thread, after success
  // Work that never touches the device (the cpu backend) runs whatever the device latch says.
  virtual bool usesDevice() const { return true; }
  // The JS error for a failed Run() (main thread).
  virtual Napi::Value Failure(Napi::Env env, const gpu::Status& status) { return AddonState::of(env).error_for(env, status); }

 private:
  static void Execute(napi_env, void* data) {
    auto* self = static_cast<PromiseWorker*>(data);
    if (self->usesDevice()) {
      const gpu::Status sticky = gpu::device_unusable();
      if (!sticky.ok()) {
        self->status_ = refused_after(sticky);
        return;
      }
    }
    try {
      self->status_ = self->Run();
    } catch (const std::bad_alloc&) {
      self->status_ = gpu::Status{2, "cudaErrorMemoryAllocation", "out of host memory while preparing the device work"};
    } catch (const std::exception& e) {  // nothing may leave a libuv thread
      self->status_ = gpu::Status{-1, "psaHostError", std::string("host code of the device work failed: ") + e.what()};
    }
  }

  static void Complete(napi_env env, napi_status status, void* data) {
    std::unique_ptr<PromiseWorker> self(static_cast<PromiseWorker*>(data));
    napi_delete_async_work(env, self->work_);
    if (status != napi_ok) return;  // cancelled: the environment is going away
    Napi::Env e(env);
    try {
      Napi::HandleScope scope(e);
      const Napi::Value value = self->status_.ok() ? self->Result(e) : self->Failure(e, self->status_);
      if (self->status_.ok()) {
        napi_resolve_deferred(env, self->deferred_, value);
      } else {
        napi_reject_deferred(env, self->deferred_, value);
      }
    } catch (const Napi::Error& error) {
      // Building the result failed (host memory), or JS cannot run any more (a terminated
      // worker_thread): reject if that is still possible, else there is nobody to tell.
      try {
        napi_reject_deferred(env, self->deferred_, error.Value());
      } catch (...) {
      }
    } catch (...) {  // std::bad_alloc from the result's host vectors
      try {
        napi_reject_deferred(env, self->deferred_, AddonState::of(e).make_error(e, "oom", "", "out of host memory while building the result"));
      } catch (...) {
      }
    }
  }

  Napi::Env env_;
  napi_deferred deferred_ = nullptr;
  napi_async_work work_ = nullptr;
  napi_value promise_ = nullptr;
  gpu::Status status_;
};

}  // namespace psa::binding
