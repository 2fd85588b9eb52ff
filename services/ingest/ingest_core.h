#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/series/event_view.h"
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
/// Checks an event as received: decoded in place (`encoded_bytes` is the size of its
/// encoding), or as a message.
std::optional<Rejection> ValidateEvent(const series::EventView& event, size_t encoded_bytes,
                                       int64_t now_us, const ValidationLimits& limits);
std::optional<Rejection> ValidateEvent(const v1::Event& event, int64_t now_us,
                                       const ValidationLimits& limits);

/// What the caller's credentials let it write: devices whose id starts with one of
/// `device_prefixes` ("" is every device), and client versions only with
/// `explicit_versions`, since a version no reading can exceed pins a point forever. Events
/// outside it are rejected per record, so that a fleet's batch loses only what it may not
/// write.
struct WritePermission {
  std::vector<std::string> device_prefixes = {""};
  bool explicit_versions = true;
};
std::optional<Rejection> CheckPermission(const series::EventView& event,
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
/// fields (and, with `time_too`, the ingest time as its time): a scalar field that occurs
/// again replaces the earlier value when the record is parsed (protobuf's merge rule), so no
/// copy of the event is needed.
void AppendStamp(int64_t ingest_time_us, bool time_too, std::string& serialized_event);

/// The events of a WriteRequest in their wire form, found in place: gRPC hands Write and
/// WriteStream the request's bytes, so that each event is checked by a series::EventView
/// and its record is the client's own encoding, stamped, instead of a protobuf message
/// parsed (a node and a key per map entry) and encoded again (ingest_bench).
class EncodedRequest {
 public:
  /// Whether `wire` is a WriteRequest: its events (field 1) are framed correctly. Other
  /// fields are skipped as protobuf skips unknown ones (groups excepted: refused). An event's
  /// own content is checked per event, by PrepareEncodedEvents. The views point into `wire`.
  bool Parse(absl::string_view wire);
  const std::vector<absl::string_view>& events() const { return events_; }

 private:
  std::vector<absl::string_view> events_;
};

/// Ingest times that no two events of one ingest process share. An event's ingest time is
/// its default version and, when its clock runs more than the future-clock lead ahead, its
/// stored time: events of one request stamped alike would be one point at one version, and
/// every reading after the first would be rejected downstream as a conflict (a device with a
/// fast clock sending a minute of buffered readings would keep one). Each request reserves
/// one stamp per accepted event, from the wall clock, or right after the last stamp handed
/// out when the clock has not passed it; so a later event of a request also wins over an
/// earlier one at the same instant. Stamps run ahead of the clock only above 1,000,000
/// accepted events/s; rejected events take none, so a caller sending events that are all
/// refused cannot push the clock ahead for everyone. Thread-safe.
class IngestClock {
 public:
  /// The first of `count` consecutive stamps, each above every stamp reserved before.
  int64_t Reserve(int64_t count, int64_t now_us);
  /// The stamp the next reservation would start at, reserving nothing.
  int64_t Now(int64_t now_us) const;

 private:
  std::atomic<int64_t> next_{0};  // the lowest stamp not reserved yet
};

/// Validates a request's events, each in its wire form, against `now_us`; an event protobuf
/// cannot decode is rejected on its own (UNDECODABLE). Accepted records hold the client's
/// encoding, not yet stamped (StampAccepted). `first_index` offsets the reported indexes (a
/// stream's later messages continue its numbering). Pure: no I/O.
PreparedBatch PrepareEncodedEvents(const std::vector<absl::string_view>& events, int64_t now_us,
                                   int64_t first_index, const ValidationLimits& limits,
                                   const WritePermission& permission = {});

/// The same for events held as messages (WriteJson's, which come from JSON).
PreparedBatch PrepareEvents(const google::protobuf::RepeatedPtrField<v1::Event>& events,
                            int64_t now_us, int64_t first_index, const ValidationLimits& limits,
                            const WritePermission& permission = {});

/// Stamps the accepted records, in order, with consecutive ingest times from
/// `first_stamp_us` (a range an IngestClock reserved for them). With `time_is_stamp` (a JSON
/// format without a time, whose readings happened when they arrived) the stamp is each
/// record's time as well.
void StampAccepted(PreparedBatch& batch, int64_t first_stamp_us, bool time_is_stamp = false);

/// What Write and WriteStream do with a message's events: validated against the clock's
/// present, and the accepted ones stamped from a reservation of as many.
PreparedBatch PrepareAndStamp(IngestClock& clock, int64_t wall_us,
                              const std::vector<absl::string_view>& events, int64_t first_index,
                              const ValidationLimits& limits, const WritePermission& permission);

/// Checks that hold for a request as a whole; INVALID_ARGUMENT with an actionable message.
absl::Status ValidateRequestShape(int event_count, const ValidationLimits& limits);

/// The reason's short name as clients see it in logs and tidemark.rejected, e.g.
/// "missing_device_id".
std::string ReasonName(v1::RejectReason reason);

}  // namespace tidemark::ingest
