#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tidemark/v1/ingest.grpc.pb.h"

namespace tidemark::testing {

struct LoadOptions {
  int devices = 30;
  int events_per_second = 500;
  int batch_size = 25;
  /// Threads sending concurrently, each with its own share of the devices and of the rate
  /// (one synchronous Write at a time each).
  int senders = 1;
  /// Measures per event besides `seq` and `temperature`: `m1`, `m2`, ... (doubles derived
  /// from `seq`, so that Check can verify each stored value).
  int extra_measures = 0;
  /// Percent of events sent `beyond_by` late (past the aggregator's lateness: repairs).
  int percent_beyond_lateness = 10;
  absl::Duration beyond_by = absl::Seconds(15);
  /// Percent of events sent `within_by` late (inside the lateness: re-emitted windows).
  int percent_within_lateness = 10;
  absl::Duration within_by = absl::Seconds(3);
  /// A Write that takes longer fails; keep it above ingest's --delivery_timeout.
  absl::Duration deadline = absl::Seconds(60);
  uint64_t seed = 1;
};

/// What the store holds against what was sent: every acknowledged event must be stored once
/// with its own values, and nothing may be stored that was never sent.
struct StoreCheck {
  int64_t acknowledged = 0;  // events ingest answered OK for
  int64_t uncertain = 0;     // events of failed requests: may or may not be stored
  int64_t stored = 0;        // `seq` points stored
  int64_t missing = 0;       // acknowledged, not stored
  int64_t unexpected = 0;    // stored, never sent
  int64_t wrong_value = 0;   // stored with another event's value
  int64_t temperature_stored = -1;  // the events' second measure, one point per stored event
  int64_t extra_stored = 0;         // points of m1, m2, ...: extra_measures per stored event
  int64_t extra_expected = 0;
  bool Exact() const {
    return acknowledged > 0 && missing == 0 && unexpected == 0 && wrong_value == 0 &&
           temperature_stored == stored && extra_stored == extra_expected;
  }
  std::string ToString() const;
};

/// Sends events over ingest's Write at a steady rate from its own threads and remembers every
/// one by (device, time): each event carries a unique `seq` (int64), a `temperature` (double)
/// and `extra_measures` more doubles. Times are unique per device; each device belongs to one
/// sender thread.
class LoadGenerator final {
 public:
  LoadGenerator(v1::IngestService::Stub& ingest, LoadOptions options);
  /// Stops the thread if it still runs.
  ~LoadGenerator();

  void Start();
  /// Stops sending and waits for the request in flight.
  void Stop();
  /// 20 events minutes late, for windows nobody else wrote to: repaired from them alone.
  /// Returns false if ingest did not accept them all.
  bool SendMinutesLate();

  int64_t acknowledged() const;
  int64_t failed_requests() const;
  /// Failed requests that were sent before `t`.
  int64_t FailedRequestsSentBefore(absl::Time t) const;
  /// The slowest Write so far (a broker outage shows here).
  absl::Duration slowest_write() const;
  /// Compares with the `points` table through `dsn`.
  StoreCheck Check(const std::string& dsn) const;

 private:
  struct Sent {
    int64_t time_us;
    int64_t seq;
  };
  /// What one sender thread owns.
  struct Sender {
    int index = 0;
    int64_t next_seq = 0;
    absl::flat_hash_map<std::string, absl::flat_hash_set<int64_t>> used_ms;
  };
  void Run(Sender& sender);
  /// Sends one request; records its events as acknowledged or uncertain.
  void Send(const v1::WriteRequest& req);
  /// Sets the event's measures from its sequence number.
  void SetMeasures(v1::Event& e, int64_t seq, double temperature) const;
  static int64_t UniqueTimeMs(Sender& sender, const std::string& device, int64_t ms);

  v1::IngestService::Stub& ingest_;
  const LoadOptions options_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  // Sender i draws devices i, i + senders, ... and sequence numbers i + 1 + k * senders;
  // SendMinutesLate uses sender 0 while no thread runs.
  std::vector<Sender> senders_;
  mutable absl::Mutex mu_;
  // (device, time_us) -> seq; hash maps, since the generator shares the machine it measures.
  absl::flat_hash_map<std::pair<std::string, int64_t>, int64_t> acked_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<std::string, int64_t>, int64_t> uncertain_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> failed_sent_at_ ABSL_GUARDED_BY(mu_);
  absl::Duration slowest_write_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidemark::testing
