#include "common/metrics/health.h"

#include <dirent.h>
#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#ifndef TIDEMARK_VERSION
#define TIDEMARK_VERSION "dev"
#endif

namespace tidemark::metrics {

HealthMonitor::HealthMonitor(HealthCheck check, std::function<void()> interrupt, Registry& registry,
                             std::shared_ptr<spdlog::logger> logger, absl::Duration interval,
                             absl::Duration stall_limit)
    : check_(std::move(check)),
      interrupt_(std::move(interrupt)),
      serving_gauge_(registry.AddGauge(
          "tidemark_serving", "1 while the service can do its job (health SERVING), else 0")),
      logger_(std::move(logger)),
      interval_(interval),
      stall_limit_(stall_limit) {
  thread_ = std::thread([this] { Loop(); });
  watchdog_ = std::thread([this] { WatchForStall(); });
}

HealthMonitor::~HealthMonitor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // No check starts after this (Loop looks at stopping_ first), so one running now is the last.
    if (check_started_ && interrupt_) interrupt_();
  }
  watchdog_.join();
  thread_.join();
}

absl::Status HealthMonitor::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void HealthMonitor::SetListener(std::function<void(bool serving)> listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
  if (listener_) listener_(current_.ok());
}

void HealthMonitor::Publish(const absl::Status& status) {
  const bool changed = !checked_ || status.ok() != current_.ok();
  if (changed && status.ok()) {
    logger_->info("msg=\"health: SERVING\"");
  } else if (changed) {
    logger_->warn("msg=\"health: NOT_SERVING\" reason={:?}", std::string(status.message()));
  }
  current_ = status;
  checked_ = true;
  serving_gauge_.Set(status.ok() ? 1 : 0);
  if (changed && listener_) listener_(status.ok());
}

void HealthMonitor::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      check_started_ = std::chrono::steady_clock::now();
    }
    const absl::Status status = check_();
    absl::MutexLock lock(&mu_);
    check_started_.reset();
    stall_reported_ = false;
    // Stopping may have cut the check short: its answer says nothing about the service.
    if (stopping_) return;
    Publish(status);
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), interval_)) return;
  }
}

void HealthMonitor::WatchForStall() {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  // Looking four times per limit reports a stall at most a quarter of the limit late.
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), stall_limit_ / 4)) {
    if (!check_started_ || stall_reported_) continue;
    const absl::Duration running =
        absl::FromChrono(std::chrono::steady_clock::now() - *check_started_);
    if (running < stall_limit_) continue;
    stall_reported_ = true;
    Publish(absl::UnavailableError(
        absl::StrCat("the health check has not answered for ",
                     absl::FormatDuration(absl::Trunc(running, absl::Milliseconds(100))),
                     " (a database, broker or store that accepts connections but does not "
                     "answer)")));
    // The check fails soon, and the next one starts afresh (a new connection, say) rather
    // than waiting on this one for ever.
    if (interrupt_) interrupt_();
  }
}

namespace {

// One sample with its HELP and TYPE.
void Sample(std::string& out, absl::string_view name, absl::string_view type,
            absl::string_view help, double value) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  SampleValue(value), "\n");
}

}  // namespace

std::string ProcessMetricsText() {
  std::string out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces; the fields after its closing ')' do not.
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
    if (f.size() > 21) {
      const double utime = std::stod(f[11]), stime = std::stod(f[12]);
      Sample(out, "process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.", (utime + stime) / ticks);
      Sample(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
             std::stod(f[20]));
      Sample(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
             std::stod(f[21]) * page);
      // starttime is in ticks since boot; boot time is the btime line of /proc/stat.
      std::ifstream proc_stat("/proc/stat");
      std::string line;
      while (std::getline(proc_stat, line)) {
        if (line.rfind("btime ", 0) == 0) {
          Sample(out, "process_start_time_seconds", "gauge",
                 "Start time of the process since unix epoch in seconds.",
                 std::stod(line.substr(6)) + std::stod(f[19]) / ticks);
          break;
        }
      }
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int fds = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(d);
    Sample(out, "process_open_fds", "gauge", "Number of open file descriptors.", fds - 1);
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    Sample(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
           static_cast<double>(limit.rlim_cur));
  }
  absl::StrAppend(&out,
                  "# HELP tidemark_build_info Which Tidemark build this process runs; always 1\n"
                  "# TYPE tidemark_build_info gauge\n",
                  "tidemark_build_info{service=\"", program_invocation_short_name, "\",version=\"",
                  TIDEMARK_VERSION, "\"} 1\n");
  return out;
}

}  // namespace tidemark::metrics
