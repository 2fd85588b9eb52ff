#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_field.h"
#include "tidemark/v1/event.pb.h"
#include "tidemark/v1/ingest.pb.h"

namespace tidemark::ingest {

/// Limits on what ingest accepts (DESIGN §4). Events outside them are rejected per record.
struct ValidationLimits {
  /// Events older than now minus this are before the raw retention horizon.
  absl::Duration retention = absl::Hours(24 * 7);
  /// Events further ahead than this cannot be corrected; between the 15-minute
  /// future-clock lead and this, they are accepted and corrected downstream.
  absl::Duration max_future = absl::Hours(24);
  int max_dimensions = 64;
  int max_measures = 256;
  int max_name_bytes = 256;
  int max_value_bytes = 2048;
  int max_event_bytes = 64 * 1024;
  /// More events than this in one request is a wholly wrong request.
  int max_events_per_request = 10'000;
};

/// Why one event was not accepted, or nothing when it is valid.
struct Rejection {
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
  std::string message;
};
std::optional<Rejection> ValidateEvent(const v1::Event& event, int64_t now_us,
                                       const ValidationLimits& limits);
/// The same, with the event's encoded size already known (ByteSizeLong walks the event).
std::optional<Rejection> ValidateEvent(const v1::Event& event, size_t encoded_bytes,
                                       int64_t now_us, const ValidationLimits& limits);

/// What the caller's credentials let it write: devices whose id starts with one of
/// `device_prefixes` ("" is every device), and client versions only with
/// `explicit_versions`, since a version no reading can exceed pins a point forever. Events
/// outside it are rejected per record, so that a fleet's batch loses only what it may not
/// write.
struct WritePermission {
  std::vector<std::string> device_prefixes = {""};
  bool explicit_versions = true;
};
std::optional<Rejection> CheckPermission(const v1::Event& event,
                                         const WritePermission& permission);

/// One accepted event ready for tidemark.raw.
struct AcceptedRecord {
  std::string key;    // device id
  std::string value;  // serialized v1::Event with ingest_time_us stamped
};

/// What one request turns into: records to make durable and per-record rejections.
struct PreparedBatch {
  std::vector<AcceptedRecord> accepted;
  std::vector<v1::RejectedRecord> rejected;
};

/// Stamps an event's encoding with its ingest time and replayed=false by appending the two
/// fields: a scalar field that occurs again replaces the earlier value when the record is
/// parsed (protobuf's merge rule), so no copy of the event is needed.
void AppendStamp(int64_t ingest_time_us, std::string& serialized_event);

/// Validates and stamps a request's events. `first_index` offsets the reported indexes
/// (a stream's later messages continue its numbering). Pure: no I/O.
PreparedBatch PrepareEvents(const google::protobuf::RepeatedPtrField<v1::Event>& events,
                            int64_t now_us, int first_index, const ValidationLimits& limits,
                            const WritePermission& permission = {});

/// Checks that hold for a request as a whole; INVALID_ARGUMENT with an actionable message.
absl::Status ValidateRequestShape(int event_count, const ValidationLimits& limits);

/// The reason's short name as clients see it in logs and tidemark.rejected, e.g.
/// "missing_device_id".
std::string ReasonName(v1::RejectReason reason);

}  // namespace tidemark::ingest
