#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace psa::emu {

#if defined(__x86_64__)
extern "C" void psa_emu_switch(void** save_sp, void* load_sp);
extern "C" void psa_emu_trampoline();
// System V x86-64: save the callee-saved registers, MXCSR and the x87 control word on the
// old stack, swap stack pointers, restore from the new stack. A new fiber's stack is laid out
// as if it had switched out, with psa_emu_trampoline as its return address.
asm(R"(
  .text
  .globl psa_emu_switch
  .type psa_emu_switch,@function
psa_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size psa_emu_switch, .-psa_emu_switch

  .globl psa_emu_trampoline
  .type psa_emu_trampoline,@function
psa_emu_trampoline:
  movq %r12, %rdi
  andq $-16, %rsp
  call psa_emu_fiber_main
  ud2
  .size psa_emu_trampoline, .-psa_emu_trampoline
)");
#endif

struct Fiber::Impl {
  Fiber* self;
  Entry entry;
  void* arg;
  void* stack = nullptr;
  std::size_t mapped = 0;
#if defined(__x86_64__)
  void* sp = nullptr;         // this fiber's saved stack pointer
  void* caller_sp = nullptr;  // the scheduler's, while this fiber runs
#else
  ucontext_t ctx, caller;
#endif
};

struct FiberStart {
  static void run(Fiber::Impl* impl) {
    impl->entry(impl->arg);
    impl->self->finished_ = true;
    impl->self->yield();
    std::abort();  // a finished fiber is never resumed
  }
};

extern "C" void psa_emu_fiber_main(void* impl) { FiberStart::run(static_cast<Fiber::Impl*>(impl)); }

#if !defined(__x86_64__)
static void ucontext_entry(unsigned hi, unsigned lo) {
  psa_emu_fiber_main(reinterpret_cast<void*>((std::uintptr_t(hi) << 32) | lo));
}
#endif

namespace {
// Stacks are reused across blocks and launches (a launch of thousands of blocks would
// otherwise map and unmap a stack per CUDA thread). One pool per OS thread, one size.
struct StackPool {
  std::size_t mapped = 0;
  std::vector<void*> free;
  ~StackPool() {
    for (void* p : free) munmap(p, mapped);
  }
};
thread_local StackPool t_pool;

void* take_stack(std::size_t mapped, std::size_t page) {
  if (t_pool.mapped == mapped && !t_pool.free.empty()) {
    void* p = t_pool.free.back();
    t_pool.free.pop_back();
    return p;
  }
  void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("psa emu: fiber stack");
    std::abort();
  }
  mprotect(mem, page, PROT_NONE);  // guard page: an overflow faults instead of corrupting memory
  return mem;
}

void give_stack(void* mem, std::size_t mapped) {
  if (t_pool.mapped != mapped) {
    for (void* p : t_pool.free) munmap(p, t_pool.mapped);
    t_pool.free.clear();
    t_pool.mapped = mapped;
  }
  t_pool.free.push_back(mem);
}
}  // namespace

Fiber::Fiber(Entry entry, void* arg, std::size_t stack_bytes) : impl_(new Impl{this, entry, arg}) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t usable = (stack_bytes + page - 1) / page * page;
  impl_->mapped = usable + page;
  void* mem = take_stack(impl_->mapped, page);
  impl_->stack = mem;
  char* top = static_cast<char*>(mem) + impl_->mapped;
#if defined(__x86_64__)
  auto* sp = reinterpret_cast<std::uint64_t*>(top);
  *--sp = 0;                                                   // alignment pad
  *--sp = reinterpret_cast<std::uint64_t>(&psa_emu_trampoline);  // "return address"
  *--sp = 0;                                                   // rbp
  *--sp = 0;                                                   // rbx
  *--sp = reinterpret_cast<std::uint64_t>(impl_);              // r12: argument for the trampoline
  *--sp = 0;                                                   // r13
  *--sp = 0;                                                   // r14
  *--sp = 0;                                                   // r15
  *--sp = 0x037F00001F80ull;                                   // MXCSR default, x87 control word default
  impl_->sp = sp;
#else
  getcontext(&impl_->ctx);
  impl_->ctx.uc_stack.ss_sp = static_cast<char*>(mem) + page;
  impl_->ctx.uc_stack.ss_size = usable;
  impl_->ctx.uc_link = nullptr;
  const auto p = reinterpret_cast<std::uintptr_t>(impl_);
  makecontext(&impl_->ctx, reinterpret_cast<void (*)()>(ucontext_entry), 2, unsigned(p >> 32), unsigned(p & 0xffffffffu));
#endif
}

Fiber::~Fiber() {
  give_stack(impl_->stack, impl_->mapped);
  delete impl_;
}

void Fiber::resume() {
#if defined(__x86_64__)
  psa_emu_switch(&impl_->caller_sp, impl_->sp);
#else
  swapcontext(&impl_->caller, &impl_->ctx);
#endif
}

void Fiber::yield() {
#if defined(__x86_64__)
  psa_emu_switch(&impl_->sp, impl_->caller_sp);
#else
  swapcontext(&impl_->ctx, &impl_->caller);
#endif
}

}  // namespace psa::emu
