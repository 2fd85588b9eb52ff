#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/metrics.h"
#include "common/retry/backoff.h"
#include "spdlog/spdlog.h"

namespace tidemark::writer {

/// Partition upkeep (creating days ahead, retiring expired ones, pruning the change log) on a
/// thread of its own, with store connections of its own. A `DETACH ... CONCURRENTLY` waits for
/// every read of its table to end: run between the batches of a consumer loop, each attempt
/// held that loop's batches for up to a lock or statement timeout, and a failed attempt came
/// back every 5 s, so dashboards reading all day stalled storing all day. Here storing never
/// waits for upkeep, and a failed task is tried again after a delay that grows from
/// `first_retry` to `interval`, so a read that outlasts many attempts is not hammered either.
class Maintenance final {
 public:
  struct Task {
    /// Names the task in logs and metrics: the table it keeps (points, aggregates).
    std::string table;
    std::function<absl::Status()> run;
  };
  struct Options {
    absl::Duration interval = absl::Minutes(10);
    absl::Duration first_retry = absl::Seconds(5);
  };

  Maintenance(std::vector<Task> tasks, const Options& options, metrics::Registry& registry,
              std::shared_ptr<spdlog::logger> logger);
  ~Maintenance();

  /// Runs every task now, then each one every interval, on the thread this starts.
  void Start();
  /// Returns once the thread has ended; a task under way finishes first (its statements are
  /// bounded by the partition timeouts).
  void Stop();

 private:
  struct Scheduled {
    Task task;
    absl::Time next;
    /// Delays after failures: from first_retry, doubling, up to interval.
    retry::Backoff retry;
    metrics::Counter* failures;
    metrics::Gauge* last_success;
  };
  void Loop();

  std::vector<Scheduled> tasks_;
  const Options options_;
  std::shared_ptr<spdlog::logger> logger_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tidemark::writer
