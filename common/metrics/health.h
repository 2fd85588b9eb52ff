#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"

namespace tidemark::metrics {

/// Runs a service's health check on its own thread every `interval` and keeps the latest
/// answer, so that probes (gRPC health, HTTP /health) never wait on a database or a broker.
/// A check still running after `stall_limit` (a server that accepts packets but never
/// answers) turns the answer NOT_SERVING until the check returns: the last answer is not
/// kept while nothing is known. A check that can be ended early comes with an `interrupt`,
/// which the monitor calls on such a stall (the check then fails at once and the next one
/// starts afresh) and when it is destroyed (so a stuck check cannot hold up a shutdown).
/// Logs each change and exports it as the gauge
/// `tidemark_serving` (1 or 0). A listener, when set, is told of every change (and once of
/// the current state), under the monitor's lock, on one of its threads.
/// Thread-safe; the check must be safe to call from the monitor's thread.
class HealthMonitor final {
 public:
  HealthMonitor(HealthCheck check, Registry& registry, std::shared_ptr<spdlog::logger> logger,
                absl::Duration interval = absl::Seconds(1),
                absl::Duration stall_limit = absl::Seconds(10))
      : HealthMonitor(std::move(check), nullptr, registry, std::move(logger), interval,
                      stall_limit) {}
  /// `interrupt` ends a check in progress soon; it is called from another of the monitor's
  /// threads, under the monitor's lock, so it must not block or call the monitor.
  HealthMonitor(HealthCheck check, std::function<void()> interrupt, Registry& registry,
                std::shared_ptr<spdlog::logger> logger, absl::Duration interval = absl::Seconds(1),
                absl::Duration stall_limit = absl::Seconds(10));
  /// Stops the threads: interrupts a check in progress, when it can, and waits for it.
  ~HealthMonitor();

  /// OK while serving; otherwise why not. NOT_SERVING until the first check has run.
  absl::Status Current() const;
  /// `listener(serving)`; replaces any earlier listener and is called at once with the state.
  void SetListener(std::function<void(bool serving)> listener);

 private:
  void Loop();
  // Reports a check that has run longer than stall_limit_.
  void WatchForStall();
  void Publish(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  HealthCheck check_;
  std::function<void()> interrupt_;
  Gauge& serving_gauge_;
  std::shared_ptr<spdlog::logger> logger_;
  const absl::Duration interval_;
  const absl::Duration stall_limit_;
  mutable absl::Mutex mu_;
  absl::Status current_ ABSL_GUARDED_BY(mu_) = absl::UnavailableError("starting");
  bool checked_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // When the check in progress started (a monotonic clock: a wall-clock step is no stall);
  // nullopt while none runs.
  std::optional<std::chrono::steady_clock::time_point> check_started_ ABSL_GUARDED_BY(mu_);
  bool stall_reported_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> listener_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
  std::thread watchdog_;
};

/// The `process_*` metrics of the Prometheus client libraries (CPU seconds, resident and
/// virtual memory, open and maximum file descriptors, start time) read from /proc/self, and
/// `tidemark_build_info{service,version}` 1; in the text format, with HELP and TYPE.
std::string ProcessMetricsText();

}  // namespace tidemark::metrics
