#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "librdkafka/rdkafka.h"

namespace tidemark::kafka {

/// The exit code of a process whose producer hit a fatal error.
inline constexpr int kFatalExitCode = 3;

struct ProducerConfig {
  std::string brokers;
  /// zstd by default: the development broker keeps 5 MiB per partition (DESIGN §8).
  std::string compression = "zstd";
  /// How long a partition's records wait for more before they are sent. Short: a unary Write
  /// waits for its slowest partition, so this is paid on every Write, while under load
  /// batches fill anyway behind the requests in flight (ingest_bench: Write of 500 events
  /// p50 ~4.5 ms at 1 ms against ~9 ms at 5 ms, and WriteStream no slower).
  absl::Duration linger = absl::Milliseconds(1);
  /// A record not acknowledged within this time fails with UNAVAILABLE.
  absl::Duration delivery_timeout = absl::Seconds(10);
  /// Bound on records waiting in the local queue; beyond it Produce() fails with
  /// RESOURCE_EXHAUSTED instead of buffering without bound.
  int max_queued_messages = 200'000;
  /// Any further librdkafka property.
  std::map<std::string, std::string> properties;
};

/// Receives the delivery outcome of produced records. Called on the producer's poll
/// thread, once per record; must not block.
class DeliverySink {
 public:
  virtual ~DeliverySink() = default;
  virtual void OnDelivery(rd_kafka_resp_err_t err) = 0;
};

/// An idempotent (acks=all) Kafka producer with its own poll thread.
/// Thread-safe: Produce may be called from any thread.
class Producer final {
 public:
  static absl::StatusOr<std::unique_ptr<Producer>> Create(const ProducerConfig& config,
                                                          std::shared_ptr<spdlog::logger> logger);
  /// Flushes for up to the delivery timeout, then stops the poll thread.
  ~Producer();

  /// Queues one record (key and value are copied). `sink` receives its outcome and must
  /// live until then; it may be null. Fails at once with RESOURCE_EXHAUSTED when the
  /// queue is full and UNAVAILABLE when every broker is known to be down.
  absl::Status Produce(const std::string& topic, absl::string_view key, absl::string_view value,
                       DeliverySink* sink);
  /// The order in which to queue `count` records for `topic`, record i having key `key(i)`,
  /// so that records bound for the same partition are adjacent; records of one key keep
  /// their order. librdkafka sends whatever a partition holds when its thread wakes, so a
  /// request's records queued partition by partition leave in fewer, fuller batches than
  /// records queued as they arrived (ingest_bench, same runs: Write events/s 1.05-1.10x,
  /// WriteStream 1.09-1.11x). Only the
  /// order: librdkafka still picks each record's partition, with the configured
  /// partitioner, whose hash this mirrors. The order is arrival order while the topic's
  /// partition count is not known yet (it is fetched in the background, and refreshed) and
  /// under the `random` partitioner.
  std::vector<uint32_t> ProduceOrder(const std::string& topic, size_t count,
                                     absl::FunctionRef<absl::string_view(size_t)> key);
  /// Reserves room for `count` records in the queue (max_queued_messages, records not yet
  /// acknowledged included), so that a caller can refuse a whole request rather than have it
  /// queued in part; false, reserving nothing, when there is none. Callers that reserve before
  /// producing and Release after cannot take each other's room. Every caller must.
  bool Reserve(size_t count);
  /// Gives back a reservation once its records are produced (or given up).
  void Release(size_t count);
  /// Waits until every queued record is delivered or failed.
  absl::Status Flush(absl::Duration timeout);
  /// True while librdkafka reports that no broker is reachable.
  bool BrokersDown() const { return brokers_down_.load(std::memory_order_relaxed); }
  /// True after a fatal error (the idempotent producer lost its guarantees): nothing can be
  /// produced any more. The producer then also asks the process to stop with exit code
  /// kFatalExitCode, so that a supervisor restarts it with a fresh producer.
  bool Fatal() const { return fatal_.load(std::memory_order_relaxed); }
  /// OK, or why records cannot be produced now (for health checks).
  absl::Status Health() const;
  /// Makes librdkafka raise a fatal error as if the broker had fenced the idempotent
  /// producer (rd_kafka_test_fatal_error), for tests of what a service does then.
  void InjectFatalErrorForTesting();

 private:
  Producer() = default;
  void PollLoop();
  // Fetches the partition count of every topic ProduceOrder was asked about; false when one
  // could not be fetched.
  bool RefreshPartitionCounts();
  static void OnDeliveryReport(rd_kafka_t*, const rd_kafka_message_t* msg, void*);
  static void OnError(rd_kafka_t*, int err, const char* reason, void* opaque);

  std::shared_ptr<spdlog::logger> logger_;
  absl::Duration delivery_timeout_;
  size_t max_queued_ = 0;
  // Room reserved by callers still producing (Reserve).
  std::atomic<size_t> reserved_{0};
  std::atomic<bool> brokers_down_{false};
  std::atomic<bool> fatal_{false};
  std::atomic<bool> stopping_{false};
  rd_kafka_t* rk_ = nullptr;
  std::thread poll_thread_;
  // librdkafka's hash for keyed records under the configured partitioner; null for `random`.
  int32_t (*partitioner_)(const rd_kafka_topic_t*, const void*, size_t, int32_t, void*,
                          void*) = nullptr;
  absl::Mutex partitions_mu_;
  // Partition count by topic; 0 until fetched.
  absl::flat_hash_map<std::string, int32_t> partitions_ ABSL_GUARDED_BY(partitions_mu_);
  std::atomic<bool> partition_counts_wanted_{false};
};

}  // namespace tidemark::kafka
