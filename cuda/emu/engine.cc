#include "engine.h"

#include "counters.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#if !defined(PSA_EMU_THREADS)
#include "fiber.h"
#endif

namespace psa::emu {
namespace {

constexpr unsigned kWarp = 32;
constexpr std::size_t kFiberStack = 256 * 1024;
constexpr auto kDeadlockTimeout = std::chrono::seconds(30);  // threads mode only

struct Copy {
  void* dst;
  const void* src;
  std::size_t bytes;
};

}  // namespace

struct ThreadContext {
  uint3 tid{};
  unsigned linear = 0;
  unsigned warp = 0;
  unsigned lane = 0;
  bool exited = false;
  // What the thread is blocked on, for deadlock reports.
  const char* waiting_on = nullptr;
  std::source_location where{};
  std::vector<Copy> open_group;
  std::vector<std::vector<Copy>> committed;
#if !defined(PSA_EMU_THREADS)
  std::unique_ptr<Fiber> fiber;
#endif
};

namespace {

// A lock and a condition variable in the OS-thread build; nothing with fibers (one OS thread).
// Warps and the block each have their own, so ThreadSanitizer sees only the happens-before
// edges a GPU has: within a warp at its collectives, across the block at __syncthreads.
struct Sync {
#if defined(PSA_EMU_THREADS)
  std::mutex mutex;
  std::condition_variable cv;
#endif
};

struct WarpState {
  Sync sync;
  unsigned lanes = 0;  // lanes that exist (the last warp may be partial)
  unsigned live = 0;   // lanes that have not exited
  unsigned arrived = 0;
  unsigned at_barrier = 0;  // lanes waiting at __syncthreads
  std::uint64_t generation = 0;
  const char* op = nullptr;
  std::source_location loc{};
  unsigned first_lane = 0;
  unsigned char in[kWarp][64];
  unsigned char out[kWarp][64];
};

struct BlockState {
  uint3 bid{};
  dim3 bdim, gdim;
  unsigned live = 0;
  unsigned arrived = 0;
  std::uint64_t generation = 0;
  std::source_location barrier_loc{};
  unsigned barrier_first = 0;
  std::atomic<std::uint64_t> progress{0};
  std::vector<ThreadContext> threads;
  std::vector<WarpState> warps;
  unsigned char* dyn = nullptr;
  std::size_t dyn_bytes = 0;
  std::atomic<bool> aborted{false};
  std::mutex failure_mutex;
  std::string failure;
  const std::function<void()>* body = nullptr;
  Sync sync;
};

thread_local BlockState* t_block = nullptr;
thread_local ThreadContext* t_self = nullptr;
thread_local std::string t_last_failure;
std::mutex g_launch_mutex;  // launches run one at a time: static __shared__ is one object per kernel
std::mutex g_limits_mutex;
std::unordered_map<const void*, int> g_dynamic_limits;

#if defined(PSA_EMU_THREADS)
using Lock = std::unique_lock<std::mutex>;
Lock lock(Sync& s) { return Lock(s.mutex); }
void notify(Sync& s) { s.cv.notify_all(); }
#else
struct Lock {};
Lock lock(Sync&) { return {}; }
void notify(Sync&) {}
#endif

// Record the first failure and wake every waiter so that all threads leave the launch.
void abort_block(BlockState& b, const std::string& what) {
  {
    std::lock_guard<std::mutex> g(b.failure_mutex);
    if (b.failure.empty()) b.failure = what;
  }
  b.aborted = true;
  { auto lk = lock(b.sync); notify(b.sync); }
  for (WarpState& w : b.warps) {
    auto lk = lock(w.sync);
    notify(w.sync);
  }
}

std::string where(const std::source_location& l) {
  std::string f = l.file_name();
  const auto slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(l.line());
}

bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string thread_name(const ThreadContext& t) {
  std::ostringstream s;
  s << "thread (" << t.tid.x << "," << t.tid.y << "," << t.tid.z << ") [warp " << t.warp << " lane " << t.lane << "]";
  return s.str();
}

std::string block_name(const BlockState& b) {
  std::ostringstream s;
  s << "block (" << b.bid.x << "," << b.bid.y << "," << b.bid.z << ")";
  return s.str();
}

std::string deadlock_report(const BlockState& b) {
  std::ostringstream s;
  s << "deadlock in " << block_name(b) << ": no thread can make progress";
  for (const ThreadContext& t : b.threads) {
    if (t.exited) continue;
    s << "\n  " << thread_name(t) << ": " << (t.waiting_on ? t.waiting_on : "running") << " at " << where(t.where);
  }
  return s.str();
}

// Block until pred() holds (called with `sync`'s lock held in threads mode).
template <typename Pred>
void wait_until([[maybe_unused]] Lock& lk, [[maybe_unused]] Sync& sync, BlockState& b, Pred pred) {
#if defined(PSA_EMU_THREADS)
  while (!pred()) {
    if (b.aborted) throw Abort{};
    if (sync.cv.wait_for(lk, kDeadlockTimeout) == std::cv_status::timeout && !pred() && !b.aborted) {
      lk.unlock();
      abort_block(b, deadlock_report(b));
      throw Abort{};
    }
  }
#else
  while (!pred()) {
    if (b.aborted) throw Abort{};
    t_self->fiber->yield();
  }
#endif
  if (b.aborted) throw Abort{};
}

// Everyone waiting at __syncthreads may go (block lock held; takes each warp's lock).
void release_barrier(BlockState& b) {
  count_barrier();
  b.arrived = 0;
  b.generation++;
  for (WarpState& w : b.warps) {
    auto lk = lock(w.sync);
    w.at_barrier = 0;
  }
  notify(b.sync);
}

void deliver(std::vector<Copy>& group) {
  for (const Copy& c : group) std::memcpy(c.dst, c.src, c.bytes);
  group.clear();
}

void finish_thread(BlockState& b, ThreadContext& t) {
  for (auto& g : t.committed) deliver(g);  // copies in flight still land after the thread exits
  t.committed.clear();
  deliver(t.open_group);
  WarpState& w = b.warps[t.warp];
  std::string problem;
  {
    auto lk = lock(w.sync);
    t.exited = true;
    w.live--;
    if (w.arrived > 0) {
      problem = thread_name(t) + " of " + block_name(b) + " exited while its warp waits in " + w.op + " at " + where(w.loc) +
                " (lanes of a warp collective must all take part)";
    }
  }
  b.progress++;
  if (!problem.empty()) return abort_block(b, problem);
  auto lk = lock(b.sync);
  b.live--;
  // Exited threads stop counting at barriers: their exit may complete one.
  if (b.arrived > 0 && b.arrived == b.live) release_barrier(b);
}

void thread_main(BlockState& b, ThreadContext& t) {
  t_block = &b;
  t_self = &t;
  try {
    (*b.body)();
  } catch (const Abort&) {
    abort_block(b, "aborted");  // the reason was recorded by whoever aborted first
    return;
  }
  finish_thread(b, t);
}

#if !defined(PSA_EMU_THREADS)
struct FiberArg {
  BlockState* b;
  ThreadContext* t;
};
void fiber_entry(void* p) {
  auto* a = static_cast<FiberArg*>(p);
  thread_main(*a->b, *a->t);
}
#endif

void poison(void* p, std::size_t n) { std::memset(p, 0xFF, n); }  // NaN as float, half and bfloat16

void run_block(BlockState& b) {
  const unsigned n = b.bdim.x * b.bdim.y * b.bdim.z;
  b.threads.resize(n);
  b.warps = std::vector<WarpState>((n + kWarp - 1) / kWarp);
  for (unsigned i = 0; i < n; i++) {
    ThreadContext& t = b.threads[i];
    t.tid = uint3{i % b.bdim.x, (i / b.bdim.x) % b.bdim.y, i / (b.bdim.x * b.bdim.y)};
    t.linear = i;
    t.warp = i / kWarp;
    t.lane = i % kWarp;
  }
  for (unsigned w = 0; w < b.warps.size(); w++) {
    b.warps[w].lanes = std::min(kWarp, n - w * kWarp);
    b.warps[w].live = b.warps[w].lanes;
  }
  b.live = n;
  if (b.dyn_bytes) poison(b.dyn, b.dyn_bytes);
#if defined(PSA_EMU_THREADS)
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned i = 0; i < n; i++) threads.emplace_back([&b, i] { thread_main(b, b.threads[i]); });
  for (auto& th : threads) th.join();
#else
  std::vector<FiberArg> args(n);
  for (unsigned i = 0; i < n; i++) {
    args[i] = FiberArg{&b, &b.threads[i]};
    b.threads[i].fiber = std::make_unique<Fiber>(&fiber_entry, &args[i], kFiberStack);
  }
  BlockState* saved_block = t_block;
  ThreadContext* saved_self = t_self;
  for (;;) {
    bool any_running = false;
    const std::uint64_t before = b.progress;
    for (ThreadContext& t : b.threads) {
      if (t.fiber->finished()) continue;
      any_running = true;
      t_block = &b;
      t_self = &t;
      t.fiber->resume();
      if (b.aborted) break;
    }
    if (b.aborted || !any_running) break;
    if (b.progress == before) {
      b.failure = deadlock_report(b);
      b.aborted = true;
      break;
    }
  }
  t_block = saved_block;
  t_self = saved_self;
  b.threads.clear();  // frees the fiber stacks (abandoned ones included)
#endif
  count_flush_block();
}

}  // namespace

[[noreturn]] void fail(const std::string& what, std::source_location loc) {
  BlockState& b = *t_block;
  abort_block(b, what + " (" + thread_name(*t_self) + " of " + block_name(b) + ", at " + where(loc) + ")");
  throw Abort{};
}

ThreadContext& self() { return *t_self; }
const uint3& thread_idx() { return t_self->tid; }
const uint3& block_idx() { return t_block->bid; }
const dim3& block_dim() { return t_block->bdim; }
const dim3& grid_dim() { return t_block->gdim; }
unsigned linear_tid() { return t_self->linear; }

void block_barrier(std::source_location loc) {
  BlockState& b = *t_block;
  ThreadContext& t = *t_self;
  WarpState& w = b.warps[t.warp];
  auto lk = lock(b.sync);
  {
    auto wl = lock(w.sync);
    if (w.arrived > 0) {
      const std::string what = std::string("__syncthreads reached while lanes of this warp wait in ") + w.op + " at " + where(w.loc) + " (divergent warp)";
      wl = {};
      lk = {};
      fail(what, loc);
    }
    w.at_barrier++;
  }
  if (b.arrived == 0) {
    b.barrier_loc = loc;
    b.barrier_first = t.linear;
  } else if (!same_site(loc, b.barrier_loc)) {
    const std::string first = thread_name(b.threads[b.barrier_first]) + " waits at " + where(b.barrier_loc);
    lk = {};
    fail("divergent __syncthreads: " + first + ", while " + thread_name(t) + " arrived at " + where(loc), loc);
  }
  t.waiting_on = "__syncthreads";
  t.where = loc;
  const std::uint64_t gen = b.generation;
  b.progress++;
  if (++b.arrived == b.live) {
    release_barrier(b);
  } else {
    wait_until(lk, b.sync, b, [&] { return b.generation != gen; });
  }
  t.waiting_on = nullptr;
}

void warp_collective(const char* op, unsigned mask, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes,
                     WarpCompute compute, const void* extra, std::source_location loc) {
  BlockState& b = *t_block;
  ThreadContext& t = *t_self;
  WarpState& w = b.warps[t.warp];
  auto lk = lock(w.sync);
  const unsigned full = w.lanes == kWarp ? 0xffffffffu : ((1u << w.lanes) - 1);
  auto fail_unlocked = [&](const std::string& what) {
    lk = {};
    fail(what, loc);
  };
  if (mask != full) {
    std::ostringstream s;
    s << op << " with mask 0x" << std::hex << mask << ": partial warp masks are not modeled (this warp's full mask is 0x" << full << ")";
    fail_unlocked(s.str());
  }
  if (w.live != w.lanes) fail_unlocked(std::string(op) + " in a warp where some lanes have exited");
  if (w.at_barrier > 0) fail_unlocked(std::string(op) + " reached while lanes of this warp wait at __syncthreads (divergent warp)");
  if (w.arrived == 0) {
    w.op = op;
    w.loc = loc;
    w.first_lane = t.lane;
  } else if (std::strcmp(op, w.op) != 0 || !same_site(loc, w.loc)) {
    fail_unlocked(std::string("divergent warp collective: lane ") + std::to_string(w.first_lane) + " waits in " + w.op + " at " + where(w.loc) +
                  ", this lane called " + op);
  }
  std::memcpy(w.in[t.lane], in, in_bytes);
  t.waiting_on = op;
  t.where = loc;
  const std::uint64_t gen = w.generation;
  b.progress++;
  if (++w.arrived == w.lanes) {
    compute(w.in, w.out, w.lanes, extra);
    w.arrived = 0;
    w.generation++;
    notify(w.sync);
  } else {
    wait_until(lk, w.sync, b, [&] { return w.generation != gen; });
  }
  std::memcpy(out, w.out[t.lane], out_bytes);
  t.waiting_on = nullptr;
}

void* dynamic_shared() { return t_block->dyn; }
std::size_t dynamic_shared_bytes() { return t_block->dyn_bytes; }

bool in_shared(const void* p, std::size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  const BlockState& b = *t_block;
  return b.dyn && c >= b.dyn && c + bytes <= b.dyn + b.dyn_bytes;
}

void async_copy(void* dst, const void* src, std::size_t bytes, std::source_location loc) {
  if (!in_shared(dst, bytes)) fail("cp.async destination is not in this block's shared memory", loc);
  if (reinterpret_cast<std::uintptr_t>(dst) % bytes || reinterpret_cast<std::uintptr_t>(src) % bytes) {
    fail("cp.async of " + std::to_string(bytes) + " bytes needs both addresses aligned to " + std::to_string(bytes), loc);
  }
  // The destination holds garbage from the issue until the wait: on a device the copy may land
  // at any moment in between, so a read of it before the wait is a bug the poison makes visible.
  poison(dst, bytes);
  t_self->open_group.push_back(Copy{dst, src, bytes});
  const unsigned n = static_cast<unsigned>(bytes);
  count_lane_access(Access::CpAsync, t_self->warp, t_self->lane, src, n, loc);
  count_lane_access(Access::CpAsyncFill, t_self->warp, t_self->lane, dst, n, loc);
}

void async_commit() {
  ThreadContext& t = *t_self;
  t.committed.push_back(std::move(t.open_group));
  t.open_group.clear();
}

void async_wait(int allowed) {
  ThreadContext& t = *t_self;
  while (static_cast<int>(t.committed.size()) > allowed) {
    deliver(t.committed.front());
    t.committed.erase(t.committed.begin());
  }
}

void set_max_dynamic_shared(const void* function, int bytes) {
  std::lock_guard<std::mutex> g(g_limits_mutex);
  g_dynamic_limits[function] = bytes;
}

const std::string& last_failure() { return t_last_failure; }

cudaError_t run_kernel(const LaunchConfig& cfg, const std::function<void()>& body) {
  const unsigned long long threads = 1ull * cfg.block.x * cfg.block.y * cfg.block.z;
  if (threads == 0 || threads > 1024 || cfg.block.z > 64 || cfg.grid.x == 0 || cfg.grid.y == 0 || cfg.grid.z == 0 ||
      cfg.grid.y > 65535 || cfg.grid.z > 65535) {
    t_last_failure = std::string("invalid launch configuration for ") + cfg.name;
    return cudaErrorInvalidConfiguration;
  }
  int limit = 48 * 1024;
  {
    std::lock_guard<std::mutex> g(g_limits_mutex);
    auto it = g_dynamic_limits.find(cfg.function);
    if (it != g_dynamic_limits.end()) limit = it->second;
  }
  if (cfg.dynamic_shared > static_cast<std::size_t>(limit)) {
    t_last_failure = std::string(cfg.name) + " asks for " + std::to_string(cfg.dynamic_shared) + " bytes of dynamic shared memory; the limit is " +
                     std::to_string(limit) + " (raise it with cudaFuncSetAttribute)";
    return cudaErrorInvalidValue;
  }
  std::lock_guard<std::mutex> serial(g_launch_mutex);
  count_launch_begin(cfg.name, cfg.launcher, 1ull * cfg.grid.x * cfg.grid.y * cfg.grid.z);
  struct EndCount {
    ~EndCount() { count_launch_end(); }
  } end_count;
  std::unique_ptr<unsigned char, decltype(&std::free)> dyn(
      cfg.dynamic_shared ? static_cast<unsigned char*>(std::aligned_alloc(128, (cfg.dynamic_shared + 127) / 128 * 128)) : nullptr, &std::free);
  for (unsigned z = 0; z < cfg.grid.z; z++) {
    for (unsigned y = 0; y < cfg.grid.y; y++) {
      for (unsigned x = 0; x < cfg.grid.x; x++) {
        BlockState b;
        b.bid = uint3{x, y, z};
        b.bdim = cfg.block;
        b.gdim = cfg.grid;
        b.dyn = dyn.get();
        b.dyn_bytes = cfg.dynamic_shared;
        b.body = &body;
        run_block(b);
        if (b.aborted) {
          t_last_failure = std::string(cfg.name) + ": " + b.failure;
          return cudaErrorLaunchFailure;
        }
      }
    }
  }
  t_last_failure.clear();
  return cudaSuccess;
}

}  // namespace psa::emu
