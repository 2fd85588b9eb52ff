#include "services/timestream-writer/maintenance.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tidemark::writer {

Maintenance::Maintenance(std::vector<Task> tasks, const Options& options,
                         metrics::Registry& registry, std::shared_ptr<spdlog::logger> logger)
    : options_(options), logger_(std::move(logger)) {
  for (Task& task : tasks) {
    const std::string labels = absl::StrCat("table=\"", task.table, "\"");
    tasks_.push_back(
        {.task = std::move(task),
         .next = absl::InfinitePast(),
         .retry = retry::Backoff({.initial = options.first_retry, .max = options.interval}),
         .failures = &registry.AddCounter("tidemark_writer_maintenance_failures_total",
                                          "Partition maintenance attempts that failed (retried "
                                          "later; storing goes on)",
                                          labels),
         .last_success = &registry.AddGauge(
             "tidemark_writer_maintenance_last_success_timestamp_seconds",
             "When partition maintenance last completed (Unix seconds; 0: not yet)", labels)});
  }
}

Maintenance::~Maintenance() { Stop(); }

void Maintenance::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void Maintenance::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Maintenance::Loop() {
  while (true) {
    absl::Time next = absl::InfiniteFuture();
    for (const Scheduled& s : tasks_) next = std::min(next, s.next);
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), next);
      if (stopping_) return;
    }
    for (Scheduled& s : tasks_) {
      if (absl::Now() < s.next) continue;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      const absl::Status status = s.task.run();
      if (status.ok()) {
        s.retry.Reset();
        s.last_success->Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
        s.next = absl::Now() + options_.interval;
        continue;
      }
      s.failures->Add();
      const absl::Duration retry = s.retry.Next();
      logger_->warn("msg=\"maintenance failed\" table={} error=\"{}\" retry_in={}", s.task.table,
                    std::string(status.message()), absl::FormatDuration(retry));
      s.next = absl::Now() + retry;
    }
  }
}

}  // namespace tidemark::writer
