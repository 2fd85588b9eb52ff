#include "services/ingest/ingest_core.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/series/series_key.h"
#include "common/series/storable.h"
#include "common/time/time_units.h"
#include "google/protobuf/wire_format_lite.h"

namespace tidemark::ingest {
namespace {

using v1::RejectReason;

Rejection Reject(RejectReason reason, std::string message) {
  return Rejection{reason, std::move(message)};
}

// Names that collide with the columns of the narrow view (DESIGN §5) or with the
// dimension Tidemark derives from the device id.
bool IsReserved(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, "time") || absl::EqualsIgnoreCase(name, "measure_name") ||
         absl::EqualsIgnoreCase(name, "measure_value") ||
         absl::EqualsIgnoreCase(name, series::kDeviceIdDimension) ||
         absl::StartsWithIgnoreCase(name, "measure_value::") ||
         absl::StartsWithIgnoreCase(name, "ts_") || absl::StartsWithIgnoreCase(name, "tidemark_");
}

// The stamp's fields: tags of at most 2 bytes, a varint of at most 10, and a 1-byte 0; and
// for a record whose time is its stamp, the time again (a 1-byte tag and a varint).
constexpr size_t kMaxStampBytes = 26;

uint8_t* WriteStamp(int64_t ingest_time_us, bool time_too, uint8_t* out) {
  using google::protobuf::internal::WireFormatLite;
  // A field repeated later in the encoding wins (protobuf, and series::EventView): the
  // time written here replaces the provisional one the record was validated with.
  if (time_too)
    out = WireFormatLite::WriteInt64ToArray(v1::Event::kTimeFieldNumber, ingest_time_us, out);
  out = WireFormatLite::WriteUInt64ToArray(v1::Event::kIngestTimeUsFieldNumber,
                                           static_cast<uint64_t>(ingest_time_us), out);
  // Only archive replay may keep an event out of the lake: whatever a client sent is reset.
  return WireFormatLite::WriteBoolToArray(v1::Event::kReplayedFieldNumber, false, out);
}

// At most `bytes` of valid UTF-8 `text`, cut at a character boundary.
absl::string_view Prefix(absl::string_view text, size_t bytes) {
  if (text.size() <= bytes) return text;
  while (bytes > 0 && (static_cast<unsigned char>(text[bytes]) & 0xC0) == 0x80) --bytes;
  return text.substr(0, bytes);
}

std::optional<Rejection> CheckName(absl::string_view kind, absl::string_view name,
                                   const ValidationLimits& limits) {
  if (name.empty()) {
    return Reject(v1::REJECT_REASON_INVALID_NAME, absl::StrCat(kind, " name is empty"));
  }
  if (static_cast<int>(name.size()) > limits.max_name_bytes) {
    return Reject(v1::REJECT_REASON_NAME_TOO_LONG,
                  absl::StrCat(kind, " name \"", Prefix(name, 32), "...\" is ", name.size(),
                               " bytes; the limit is ", limits.max_name_bytes));
  }
  if (IsReserved(name)) {
    return Reject(v1::REJECT_REASON_RESERVED_NAME,
                  absl::StrCat(kind, " name \"", name, "\" is reserved"));
  }
  return std::nullopt;
}

}  // namespace

std::optional<Rejection> ValidateEvent(const v1::Event& event, int64_t now_us,
                                       const ValidationLimits& limits) {
  series::EventView view;
  view.Assign(event);
  return ValidateEvent(view, event.ByteSizeLong(), now_us, limits);
}

std::optional<Rejection> ValidateEvent(const series::EventView& event, size_t encoded_bytes,
                                       int64_t now_us, const ValidationLimits& limits) {
  if (const size_t bytes = encoded_bytes; bytes > static_cast<size_t>(limits.max_event_bytes)) {
    return Reject(
        v1::REJECT_REASON_PAYLOAD_TOO_LARGE,
        absl::StrCat("event is ", bytes, " bytes; the limit is ", limits.max_event_bytes));
  }
  // What downstream services could not store or window consistently (the shared rule);
  // first, so that every message below quotes valid text.
  if (std::optional<series::Problem> p = series::CheckStorableContent(event)) {
    return Reject(p->reason, std::move(p->message));
  }
  if (static_cast<int>(event.device_id().size()) > limits.max_value_bytes) {
    return Reject(v1::REJECT_REASON_NAME_TOO_LONG, "device_id is too long");
  }
  // A time beyond what Tidemark handles is too far ahead, or too far back, like any other.
  absl::StatusOr<int64_t> time_us = time::ToMicros(event.time(), event.time_unit());
  if (absl::IsInvalidArgument(time_us.status())) {
    return Reject(v1::REJECT_REASON_UNDECODABLE,
                  absl::StrCat("time_unit ", static_cast<int>(event.time_unit()),
                               " is not a time unit (seconds, milliseconds, microseconds or "
                               "nanoseconds)"));
  }
  if (!time_us.ok()) time_us = event.time() < 0 ? INT64_MIN : INT64_MAX;
  if (*time_us > now_us + absl::ToInt64Microseconds(limits.max_future)) {
    return Reject(v1::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE,
                  absl::StrCat("time is more than ", absl::FormatDuration(limits.max_future),
                               " ahead of the ingest time; too far to correct"));
  }
  if (*time_us < now_us - absl::ToInt64Microseconds(limits.retention)) {
    return Reject(v1::REJECT_REASON_TIME_BEFORE_RETENTION,
                  absl::StrCat("time is more than ", absl::FormatDuration(limits.retention),
                               " before the ingest time, beyond the raw retention"));
  }
  if (static_cast<int>(event.measures().size()) > limits.max_measures) {
    return Reject(v1::REJECT_REASON_TOO_MANY_MEASURES,
                  absl::StrCat("event has ", event.measures().size(), " measures; the limit is ",
                               limits.max_measures));
  }
  if (static_cast<int>(event.dimensions().size()) > limits.max_dimensions) {
    return Reject(v1::REJECT_REASON_TOO_MANY_DIMENSIONS,
                  absl::StrCat("event has ", event.dimensions().size(),
                               " dimensions; the limit is ", limits.max_dimensions));
  }
  for (const auto& [name, value] : event.dimensions()) {
    if (auto r = CheckName("dimension", name, limits)) return r;
    if (static_cast<int>(value.size()) > limits.max_value_bytes) {
      return Reject(v1::REJECT_REASON_NAME_TOO_LONG,
                    absl::StrCat("value of dimension \"", name, "\" is too long"));
    }
  }
  for (const auto& [name, value] : event.measures()) {
    if (auto r = CheckName("measure", name, limits)) return r;
    if (value.value_case() == v1::MeasureValue::kStringValue &&
        static_cast<int>(value.string_value().size()) > limits.max_value_bytes) {
      return Reject(v1::REJECT_REASON_PAYLOAD_TOO_LARGE,
                    absl::StrCat("string measure \"", name, "\" is too long"));
    }
  }
  return std::nullopt;
}

std::optional<Rejection> CheckPermission(const series::EventView& event,
                                         const WritePermission& permission) {
  bool device_allowed = false;
  for (const std::string& prefix : permission.device_prefixes) {
    if (absl::StartsWith(event.device_id(), prefix)) {
      device_allowed = true;
      break;
    }
  }
  if (!device_allowed) {
    return Rejection{v1::REJECT_REASON_DEVICE_NOT_PERMITTED,
                     "the credentials may not write this device (outside their fleet)"};
  }
  if (event.has_version() && !permission.explicit_versions) {
    return Rejection{v1::REJECT_REASON_VERSION_NOT_PERMITTED,
                     "the credentials may not set an explicit version (scope explicit_version)"};
  }
  return std::nullopt;
}

void AppendStamp(int64_t ingest_time_us, bool time_too, std::string& serialized_event) {
  const size_t size = serialized_event.size();
  serialized_event.resize(size + kMaxStampBytes);
  auto* begin = reinterpret_cast<uint8_t*>(serialized_event.data());
  serialized_event.resize(
      static_cast<size_t>(WriteStamp(ingest_time_us, time_too, begin + size) - begin));
}

bool EncodedRequest::Parse(absl::string_view wire) {
  events_.clear();
  const auto* p = reinterpret_cast<const uint8_t*>(wire.data());
  const uint8_t* const end = p + wire.size();
  // A varint of at most 10 bytes; false when it runs past the end or is longer.
  auto varint = [&](uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
      const uint8_t b = *p++;
      out |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  while (p < end) {
    uint64_t tag = 0, n = 0;
    if (!varint(tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFF) return false;
    switch (tag & 7) {
      case 0:  // varint
        if (!varint(n)) return false;
        break;
      case 1:  // fixed64
        if (end - p < 8) return false;
        p += 8;
        break;
      case 5:  // fixed32
        if (end - p < 4) return false;
        p += 4;
        break;
      case 2:  // length-delimited: an event (field 1), or an unknown field
        if (!varint(n) || n > static_cast<uint64_t>(end - p) || n > INT32_MAX) return false;
        if (tag >> 3 == v1::WriteRequest::kEventsFieldNumber) {
          events_.emplace_back(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
        }
        p += n;
        break;
      default:  // groups (no client of this API sends them), or no wire type at all
        return false;
    }
  }
  return true;
}

int64_t IngestClock::Reserve(int64_t count, int64_t now_us) {
  int64_t next = next_.load(std::memory_order_relaxed);
  int64_t first = 0;
  do {
    first = std::max(next, now_us);
  } while (!next_.compare_exchange_weak(next, first + count, std::memory_order_relaxed));
  return first;
}

int64_t IngestClock::Now(int64_t now_us) const {
  return std::max(next_.load(std::memory_order_relaxed), now_us);
}

PreparedBatch PrepareEncodedEvents(const std::vector<absl::string_view>& events, int64_t now_us,
                                   int64_t first_index, const ValidationLimits& limits,
                                   const WritePermission& permission) {
  PreparedBatch batch;
  batch.accepted.reserve(events.size());
  series::EventView event;  // reused: after the first events, decoding allocates nothing
  for (size_t i = 0; i < events.size(); ++i) {
    const absl::string_view wire = events[i];
    std::optional<Rejection> r;
    if (!event.Parse(wire)) {
      r = Reject(v1::REJECT_REASON_UNDECODABLE,
                 "event is not a tidemark.v1.Event encoding (protobuf cannot decode it)");
    }
    if (!r) r = ValidateEvent(event, wire.size(), now_us, limits);
    if (!r) r = CheckPermission(event, permission);
    if (r) {
      v1::RejectedRecord& rec = batch.rejected.emplace_back();
      rec.set_index(first_index + static_cast<int64_t>(i));
      rec.set_reason(r->reason);
      rec.set_message(std::move(r->message));
      continue;
    }
    AcceptedRecord& out = batch.accepted.emplace_back();
    out.key = std::string(event.device_id());
    // The client's encoding, with room for the stamp: one buffer allocated once.
    out.value.reserve(wire.size() + kMaxStampBytes);
    out.value.assign(wire.data(), wire.size());
  }
  return batch;
}

void StampAccepted(PreparedBatch& batch, int64_t first_stamp_us, bool time_is_stamp) {
  for (size_t k = 0; k < batch.accepted.size(); ++k) {
    AppendStamp(first_stamp_us + static_cast<int64_t>(k), time_is_stamp, batch.accepted[k].value);
  }
}

PreparedBatch PrepareAndStamp(IngestClock& clock, int64_t wall_us,
                              const std::vector<absl::string_view>& events, int64_t first_index,
                              const ValidationLimits& limits, const WritePermission& permission) {
  const int64_t now_us = clock.Now(wall_us);
  PreparedBatch batch = PrepareEncodedEvents(events, now_us, first_index, limits, permission);
  if (!batch.accepted.empty()) {
    StampAccepted(batch, clock.Reserve(static_cast<int64_t>(batch.accepted.size()), now_us));
  }
  return batch;
}

PreparedBatch PrepareEvents(const google::protobuf::RepeatedPtrField<v1::Event>& events,
                            int64_t now_us, int64_t first_index, const ValidationLimits& limits,
                            const WritePermission& permission) {
  std::vector<std::string> encoded;
  encoded.reserve(events.size());
  for (const v1::Event& e : events) encoded.push_back(e.SerializeAsString());
  return PrepareEncodedEvents(std::vector<absl::string_view>(encoded.begin(), encoded.end()),
                              now_us, first_index, limits, permission);
}

absl::Status ValidateRequestShape(int event_count, const ValidationLimits& limits) {
  if (event_count == 0) return absl::InvalidArgumentError("the request has no events");
  if (event_count > limits.max_events_per_request) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", event_count, " events; send at most ",
                     limits.max_events_per_request, " per request or use WriteStream"));
  }
  return absl::OkStatus();
}

std::string ReasonName(v1::RejectReason reason) {
  std::string name = v1::RejectReason_Name(reason);
  constexpr absl::string_view kPrefix = "REJECT_REASON_";
  if (absl::StartsWith(name, kPrefix)) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

}  // namespace tidemark::ingest
