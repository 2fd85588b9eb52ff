#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/kafka/producer.h"
#include "services/archive/archive_core.h"
#include "services/archive/lake.h"

namespace tidemark::archive {

struct ReplayRequest {
  /// Events whose partition time (the lake's layout) is in [from_us, to_us).
  int64_t from_us = 0;
  int64_t to_us = 0;
  /// Only this device, when set.
  std::optional<std::string> device_id;
  PartitionTime partition_by = PartitionTime::kEvent;
  std::string topic = "tidemark.raw";
};

struct ReplayOutcome {
  int64_t files = 0;
  int64_t events = 0;
  /// Stopped by a shutdown signal before the end of the range: `events` (of `files` files,
  /// the last perhaps in part) were sent and acknowledged.
  bool stopped = false;
};

/// Counts records Kafka did not acknowledge. Must outlive the producer it is given to: records
/// still queued when a replay stops early report to it later.
class DeliveryFailures final : public kafka::DeliverySink {
 public:
  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) failed_.fetch_add(1);
  }
  int64_t failed() const { return failed_.load(); }

 private:
  std::atomic<int64_t> failed_{0};
};

/// Reads the lake's files for the hours of the range back into the raw topic, keyed by device
/// id, each event as it was archived: its original time, version and ingest time, so that the
/// store's versioned upserts make a second replay change nothing. Waits for Kafka to
/// acknowledge every event. Raising `stop` (when given) ends it at the next event, once what
/// was sent is acknowledged.
absl::StatusOr<ReplayOutcome> Replay(Lake& lake, kafka::Producer& producer,
                                     DeliveryFailures& failures, const ReplayRequest& request,
                                     const std::atomic<bool>* stop = nullptr);

}  // namespace tidemark::archive
