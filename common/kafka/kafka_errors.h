#pragma once

#include "absl/status/status.h"
#include "librdkafka/rdkafka.h"

namespace tidemark::kafka {

/// Whether retrying the same operation later can succeed (broker down, timeout, queue full)
/// as opposed to an error that retrying cannot fix (bad config, message too large, fatal).
bool IsRetriable(rd_kafka_resp_err_t err);

/// Converts a librdkafka error to a status whose code callers can act on:
/// UNAVAILABLE for retriable broker errors, RESOURCE_EXHAUSTED for a full local queue,
/// INVALID_ARGUMENT for a record Kafka will never take, INTERNAL otherwise.
absl::Status ToStatus(rd_kafka_resp_err_t err, absl::string_view what);

}  // namespace tidemark::kafka
