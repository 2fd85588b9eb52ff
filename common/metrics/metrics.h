#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace httplib {
class Server;
}

namespace tidemark::metrics {

/// A monotonically increasing count. Thread-safe.
class Counter final {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

/// A value that goes up and down. Thread-safe.
class Gauge final {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Latency distribution in seconds with fixed buckets. Thread-safe.
class Histogram final {
 public:
  Histogram();
  void Observe(double seconds);
  std::string Render(const std::string& name, const std::string& labels) const;

 private:
  static constexpr double kBounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10};
  static constexpr int kBuckets = sizeof(kBounds) / sizeof(kBounds[0]);
  std::atomic<uint64_t> buckets_[kBuckets + 1];
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

/// The process's metrics, rendered in the Prometheus text format. Metrics are created once
/// at wiring time and live as long as the registry; references to them stay valid.
/// A sample value in the text format: the shortest decimal that reads back as `value` (so a
/// Unix timestamp keeps its seconds, where printf's %g keeps six digits: 1.79657e+09), or
/// NaN, +Inf, -Inf.
std::string SampleValue(double value);

class Registry final {
 public:
  /// `labels` is the inside of the braces, e.g. `reason="stale"`, or empty.
  Counter& AddCounter(const std::string& name, const std::string& help,
                      const std::string& labels = "");
  Gauge& AddGauge(const std::string& name, const std::string& help, const std::string& labels = "");
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          const std::string& labels = "");
  std::string Render() const;

 private:
  struct Entry {
    std::string name, help, labels, type;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
  };
  mutable absl::Mutex mu_;
  std::deque<Counter> counters_ ABSL_GUARDED_BY(mu_);
  std::deque<Gauge> gauges_ ABSL_GUARDED_BY(mu_);
  std::deque<Histogram> histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

/// Whether a service can do its job; when not, why (for a person).
using HealthCheck = std::function<absl::Status()>;

/// Serves GET /metrics (the registry, then the process_* metrics and tidemark_build_info)
/// over HTTP on its own thread until destroyed; with a
/// health check also GET /health: 200 "SERVING", or 503 "NOT_SERVING: <why>" (for services
/// without a gRPC server, such as the archive).
class MetricsServer final {
 public:
  /// Binds `host:port` (port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const Registry& registry,
                                                              const std::string& host, int port,
                                                              HealthCheck health = nullptr);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  // Set once the listening loop has returned (it may fail at once).
  std::atomic<bool> loop_ended_{false};
};

}  // namespace tidemark::metrics
