// A fixed set of worker threads shared by every call. A job is a count of independent items;
// threads take the next item from a shared counter, so which thread runs an item never changes
// what the item computes: results do not depend on the thread count or on scheduling.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace psa::cpu {

class ThreadPool {
 public:
  // Runs body(item, worker) for every item in [0, items) on up to `threads` threads (the
  // caller is worker 0), worker < threads; returns when all items are done. Jobs from
  // several callers run one after another. The first exception an item throws is rethrown
  // here once the job has stopped (items not yet started are skipped).
  void run(int threads, std::int64_t items, const std::function<void(std::int64_t item, int worker)>& body);

  // The process-wide pool (its threads are started on first use and grow on demand).
  static ThreadPool& shared();
  // Hardware threads of this machine (at least 1).
  static int hardwareThreads();

  ~ThreadPool();

 private:
  void grow(int workers);
  void workerLoop(int worker);
  void drain(int worker);

  std::mutex jobMutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> threads_;
  const std::function<void(std::int64_t, int)>* body_ = nullptr;
  std::int64_t items_ = 0;
  std::int64_t next_ = 0;
  int participants_ = 0;  // pool workers taking part in the current job (ids 1..participants_)
  int running_ = 0;       // pool workers still inside the current job
  std::uint64_t generation_ = 0;
  std::exception_ptr failure_;
  bool stopping_ = false;
};

}  // namespace psa::cpu
