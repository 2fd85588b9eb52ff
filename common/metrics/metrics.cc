#include "common/metrics/metrics.h"

#include <sys/socket.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/metrics/health.h"
#include "httplib.h"

namespace tidemark::metrics {
namespace {

std::string Braced(const std::string& labels) {
  return labels.empty() ? "" : absl::StrCat("{", labels, "}");
}

}  // namespace

std::string SampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, r.ptr);
}

Histogram::Histogram() {
  for (auto& b : buckets_) b.store(0);
}

void Histogram::Observe(double seconds) {
  int i = 0;
  while (i < kBuckets && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + seconds, std::memory_order_relaxed)) {
  }
}

std::string Histogram::Render(const std::string& name, const std::string& labels) const {
  std::string out;
  const std::string sep = labels.empty() ? "" : absl::StrCat(labels, ",");
  uint64_t cumulative = 0;
  for (int i = 0; i <= kBuckets; ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le = i < kBuckets ? absl::StrCat(kBounds[i]) : "+Inf";
    absl::StrAppend(&out, name, "_bucket{", sep, "le=\"", le, "\"} ", cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_sum", Braced(labels), " ", SampleValue(sum_.load()), "\n");
  absl::StrAppend(&out, name, "_count", Braced(labels), " ", count_.load(), "\n");
  return out;
}

Counter& Registry::AddCounter(const std::string& name, const std::string& help,
                              const std::string& labels) {
  absl::MutexLock lock(&mu_);
  Counter& c = counters_.emplace_back();
  entries_.push_back({name, help, labels, "counter", &c, nullptr, nullptr});
  return c;
}

Gauge& Registry::AddGauge(const std::string& name, const std::string& help,
                          const std::string& labels) {
  absl::MutexLock lock(&mu_);
  Gauge& g = gauges_.emplace_back();
  entries_.push_back({name, help, labels, "gauge", nullptr, &g, nullptr});
  return g;
}

Histogram& Registry::AddHistogram(const std::string& name, const std::string& help,
                                  const std::string& labels) {
  absl::MutexLock lock(&mu_);
  Histogram& h = histograms_.emplace_back();
  entries_.push_back({name, help, labels, "histogram", nullptr, nullptr, &h});
  return h;
}

std::string Registry::Render() const {
  absl::MutexLock lock(&mu_);
  // Group samples of one metric name under one HELP/TYPE header, as Prometheus expects.
  std::map<std::string, std::vector<const Entry*>> by_name;
  for (const Entry& e : entries_) by_name[e.name].push_back(&e);
  std::string out;
  for (const auto& [name, entries] : by_name) {
    absl::StrAppend(&out, "# HELP ", name, " ", entries.front()->help, "\n# TYPE ", name, " ",
                    entries.front()->type, "\n");
    for (const Entry* e : entries) {
      if (e->counter)
        absl::StrAppend(&out, name, Braced(e->labels), " ", e->counter->Value(), "\n");
      if (e->gauge) {
        absl::StrAppend(&out, name, Braced(e->labels), " ", SampleValue(e->gauge->Value()), "\n");
      }
      if (e->histogram) out += e->histogram->Render(name, e->labels);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const Registry& registry,
                                                                    const std::string& host,
                                                                    int port, HealthCheck health) {
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->server_ = std::make_unique<httplib::Server>();
  // httplib's default also sets SO_REUSEPORT, which lets a second process bind a port that is
  // in use and share its traffic; a port in use must be a start-up error instead.
  s->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s->server_->Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.Render() + ProcessMetricsText(), "text/plain; version=0.0.4");
  });
  if (health) {
    s->server_->Get("/health", [health](const httplib::Request&, httplib::Response& res) {
      const absl::Status status = health();
      res.status = status.ok() ? 200 : 503;
      res.set_content(
          status.ok() ? "SERVING\n" : absl::StrCat("NOT_SERVING: ", status.message(), "\n"),
          "text/plain");
    });
  }
  s->port_ = port == 0 ? s->server_->bind_to_any_port(host) : port;
  if (port != 0 && !s->server_->bind_to_port(host, port)) s->port_ = -1;
  if (s->port_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind metrics HTTP on ", host, ":", port));
  }
  s->thread_ = std::thread([srv = s->server_.get(), ended = &s->loop_ended_] {
    srv->listen_after_bind();
    ended->store(true);
  });
  return s;
}

MetricsServer::~MetricsServer() {
  // httplib's stop() does nothing until the loop runs, which would then run for ever and the
  // join below with it: a service that fails to start just after this one (its gRPC port in
  // use) hung on exit. Wait for the loop to start, or to have ended on its own.
  while (thread_.joinable() && !server_->is_running() && !loop_ended_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tidemark::metrics
