#include "thread_pool.h"

#include <algorithm>
#include <utility>

namespace psa::cpu {

ThreadPool& ThreadPool::shared() {
  static ThreadPool pool;
  return pool;
}

int ThreadPool::hardwareThreads() { return std::max(1u, std::thread::hardware_concurrency()); }

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::grow(int workers) {
  while (static_cast<int>(threads_.size()) < workers) {
    const int id = static_cast<int>(threads_.size()) + 1;
    threads_.emplace_back([this, id] { workerLoop(id); });
  }
}

// Takes items until none are left; the counter is read under the lock, items run outside it.
void ThreadPool::drain(int worker) {
  for (;;) {
    std::int64_t item;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_ >= items_) return;
      item = next_++;
    }
    try {
      (*body_)(item, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failure_) failure_ = std::current_exception();
      next_ = items_;
    }
  }
}

void ThreadPool::workerLoop(int worker) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && worker <= participants_); });
      if (stopping_) return;
      seen = generation_;
    }
    drain(worker);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--running_ == 0) done_.notify_one();
  }
}

void ThreadPool::run(int threads, std::int64_t items, const std::function<void(std::int64_t, int)>& body) {
  if (items <= 0) return;
  const int helpers = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), items)) - 1;
  if (helpers == 0) {
    for (std::int64_t i = 0; i < items; i++) body(i, 0);
    return;
  }
  std::lock_guard<std::mutex> job(jobMutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    grow(helpers);
    body_ = &body;
    items_ = items;
    next_ = 0;
    participants_ = helpers;
    running_ = helpers;
    generation_++;
  }
  wake_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return running_ == 0; });
  body_ = nullptr;
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
}

}  // namespace psa::cpu
