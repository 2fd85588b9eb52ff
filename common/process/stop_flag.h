#pragma once

#include <atomic>
#include <thread>

#include "common/log/log.h"
#include "common/process/shutdown_signal.h"

namespace tidemark::process {

/// For services whose main thread runs a consumer loop rather than waiting: waits on the
/// shutdown signal on its own thread and raises the flag. Destruction ends the wait.
class StopFlag final {
 public:
  StopFlag(ShutdownSignal& signal, spdlog::logger& logger);
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;

  const std::atomic<bool>& flag() const { return stop_; }
  bool stopped() const { return stop_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace tidemark::process
