// Device work off the event loop: Run() executes on a libuv worker thread and returns a
// Status; the Promise resolves with Result() or rejects with the coded error for the Status.
#pragma once

#include <napi.h>

#include "addon_state.h"

namespace psa::binding {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queue the work and hand back its Promise.
  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  virtual gpu::Status Run() = 0;                    // worker thread: no JS here
  virtual Napi::Value Result(Napi::Env env) = 0;   // main thread, after success
  virtual void Finished() {}                        // main thread, after success or failure

 private:
  void Execute() override { status_ = Run(); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (status_.ok()) {
      deferred_.Resolve(Result(env));
    } else {
      deferred_.Reject(AddonState::of(env).error_for(env, status_));
    }
    Finished();
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(e.Value());
    Finished();
  }

  Napi::Promise::Deferred deferred_;
  gpu::Status status_;
};

}  // namespace psa::binding
