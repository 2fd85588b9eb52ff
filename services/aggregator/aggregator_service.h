#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/metrics/metrics.h"
#include "services/aggregator/window_engine.h"

namespace tidemark::aggregator {

struct AggregatorConfig {
  WindowConfig windows;
  std::string aggregates_topic = "tidemark.aggregates";
  std::string late_topic = "tidemark.late";
  size_t poll_batch = 5000;
  /// How often outputs are flushed and checkpoints committed.
  absl::Duration commit_interval = absl::Seconds(1);
};

struct AggregatorMetrics {
  explicit AggregatorMetrics(metrics::Registry& r);
  metrics::Registry& registry;
  metrics::Gauge& windows_open;
  metrics::Gauge& consumer_lag;
  metrics::Counter& records;
  metrics::Counter& emitted;
  metrics::Counter& re_emitted;
  metrics::Counter& late_within_lateness;
  metrics::Counter& beyond_lateness;
  metrics::Counter& clock_corrected;
  metrics::Counter& undecodable;
  metrics::Counter& added_size_repairs;
  /// Per partition, created when a partition is first assigned.
  std::map<int32_t, metrics::Gauge*> watermark_lag;
};

/// Consumes tidemark.raw, windows it per partition, produces aggregates and late points, and
/// commits per partition the checkpoint of its window state (the lowest offset a live window
/// needs, with the watermark as commit metadata) once every output before it is acknowledged.
/// On assignment, a partition's windows are rebuilt by replaying from its checkpoint.
class AggregatorLoop final : public kafka::PartitionListener {
 public:
  AggregatorLoop(const AggregatorConfig& config, kafka::Producer& producer,
                 AggregatorMetrics& metrics, std::shared_ptr<spdlog::logger> logger);
  ~AggregatorLoop() override;

  /// Runs until `stop` (then commits and returns OK) or a fatal error.
  absl::Status Run(kafka::Consumer& consumer, const std::atomic<bool>& stop);

  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override;
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override;

 private:
  class Deliveries;
  /// Produces outputs, coalescing revisions of a window to the last one. While Kafka refuses
  /// them it retries, until `stop`: then it returns false with outputs unpublished.
  bool Publish(EngineOutput& out, const std::atomic<bool>& stop);
  /// Waits for every produced output, then commits the given partitions' checkpoints.
  absl::Status FlushAndCommit(const std::vector<kafka::TopicPartition>& partitions);
  void UpdateGauges();

  const AggregatorConfig config_;
  kafka::Producer& producer_;
  AggregatorMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<Deliveries> deliveries_;
  kafka::Consumer* consumer_ = nullptr;
  std::map<kafka::TopicPartition, std::unique_ptr<PartitionWindows>> partitions_;
  absl::Status fatal_;
  /// Each record is decoded into this view, which after the first records does not allocate.
  series::EventView event_;
  /// Set when outputs were left unpublished: nothing may be committed after that, not even
  /// when the consumer's close revokes the partitions.
  bool unpublished_ = false;
};

}  // namespace tidemark::aggregator
