#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/metrics/metrics.h"
#include "services/timestream-writer/aggregate_store.h"
#include "services/timestream-writer/point_store.h"

namespace tidemark::writer {

/// Where a WriterLoop makes its records durable.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  /// Stores `records` in one transaction and returns the records (or points of records) it
  /// refused, by index into `records`. INVALID_ARGUMENT means the store refused some value:
  /// the loop then retries record by record. Any other error is retried whole, later.
  virtual absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) = 0;
  /// Periodic upkeep (partitions, retention); failures are logged and retried later.
  virtual absl::Status Maintain() { return absl::OkStatus(); }
};

/// Raw events -> series and points (and raw_progress).
class RawPointSink final : public BatchSink {
 public:
  RawPointSink(PointStore& store, absl::Duration future_clock_lead, absl::Duration retention,
               metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;
  absl::Status Maintain() override;
  uint64_t upserted() const { return upserted_.Value(); }
  uint64_t unchanged() const { return unchanged_.Value(); }

 private:
  PointStore& store_;
  absl::Duration future_clock_lead_;
  absl::Duration retention_;
  metrics::Counter& upserted_;
  metrics::Counter& stale_;
  metrics::Counter& unchanged_;
  metrics::Counter& clock_corrected_;
};

/// Window aggregates from the aggregator -> aggregates.
class AggregateSink final : public BatchSink {
 public:
  AggregateSink(AggregateStore& store, absl::Duration retention, metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;
  absl::Status Maintain() override;

 private:
  AggregateStore& store_;
  absl::Duration retention_;
  metrics::Counter& upserted_;
  metrics::Counter& stale_;
};

/// Points late beyond allowed lateness -> their windows recomputed from stored raw points.
/// The repair runs in the writer because it is a database operation that must wait for the
/// raw points it reads: the writer records how far it has stored each raw partition in the
/// same transaction as the points, and a repair waits (backing off) until that covers the
/// late point's offset.
class RepairSink final : public BatchSink {
 public:
  RepairSink(AggregateStore& store, metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;

 private:
  AggregateStore& store_;
  metrics::Counter& repaired_;
};

struct WriterConfig {
  /// Names this loop in logs and metrics (raw, aggregates, late).
  std::string name = "raw";
  std::string rejected_topic = "tidemark.rejected";
  /// A batch is written when it holds this many records or is this old.
  size_t batch_max_records = 5000;
  absl::Duration batch_max_age = absl::Milliseconds(200);
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(5);
  absl::Duration maintenance_interval = absl::Minutes(10);
};

struct WriterMetrics {
  WriterMetrics(metrics::Registry& r, const std::string& loop);
  metrics::Counter& records;
  metrics::Counter& rejected;
  metrics::Counter& store_retries;
  metrics::Histogram& batch_latency;
  metrics::Gauge& consumer_lag;
};

/// Moves records from Kafka into a sink: batches by size and age, writes each batch in one
/// transaction, publishes what the sink refuses to tidemark.rejected, and only then commits
/// the batch's offsets. While the sink fails it pauses consumption and retries the same batch
/// with backoff; it never skips a record.
class WriterLoop final : public kafka::PartitionListener {
 public:
  WriterLoop(const WriterConfig& config, BatchSink& sink, kafka::Producer& rejected_producer,
             WriterMetrics& metrics, std::shared_ptr<spdlog::logger> logger);

  /// Runs until `stop` is set (then writes what it holds and returns OK) or a fatal error.
  absl::Status Run(kafka::Consumer& consumer, const std::atomic<bool>& stop);

  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override;
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override;

 private:
  /// Writes `pending_` durably and commits its offsets; retries until done or stopped.
  absl::Status Flush(kafka::Consumer& consumer, const std::atomic<bool>& stop);
  absl::StatusOr<std::vector<PointRejection>> StoreRecords(const std::vector<size_t>& sources);
  /// The tidemark.rejected record for a rejection of pending_[r.source].
  std::string RejectedRecord(const PointRejection& r) const;
  /// Produces (key, value) records and waits until Kafka acknowledged them.
  absl::Status PublishRejections(const std::vector<std::pair<std::string, std::string>>& records);
  void Backoff(kafka::Consumer& consumer, absl::Duration& delay);

  const WriterConfig config_;
  BatchSink& sink_;
  kafka::Producer& rejected_producer_;
  WriterMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  std::vector<kafka::Message> pending_;
  absl::Time batch_started_;
};

}  // namespace tidemark::writer
