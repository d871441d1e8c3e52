// Fibers for the CPU execution model: one per CUDA thread, all on the OS thread that runs
// the block, switched cooperatively. On x86-64 a switch saves only the callee-saved
// registers (a few nanoseconds); elsewhere it falls back to ucontext, which also saves the
// signal mask (a system call per switch, about 1-2 microseconds).
#pragma once

#include <cstddef>

namespace psa::emu {

class Fiber {
 public:
  using Entry = void (*)(void* arg);
  Fiber(Entry entry, void* arg, std::size_t stack_bytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Run this fiber until it yields or finishes; returns to the caller (the scheduler).
  void resume();
  // From inside this fiber: go back to whoever resumed it.
  void yield();
  bool finished() const { return finished_; }

  struct Impl;

 private:
  Impl* impl_;
  bool finished_ = false;
  friend struct FiberStart;
};

}  // namespace psa::emu
