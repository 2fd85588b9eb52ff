// Ingest's per-record validation against what the consumers then do with an accepted record.
// Input: a serialized tidemark.v1.Event as a client could send it in a Write request.
//
// Properties: validation and batch preparation agree on every event; an accepted event becomes
// a raw record that decodes to the same event (stamped), that the shared point mapping turns
// into one point per measure, that the writer stages in full without refusing any of it, and
// that the archive writes as a JSON line reading back as the same event.

#include <cstddef>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/series/event_points.h"
#include "common/series/series_key.h"
#include "fuzz/fuzz_support.h"
#include "services/archive/archive_core.h"
#include "services/ingest/ingest_core.h"
#include "services/timestream-writer/writer_core.h"

namespace tidemark::fuzz {
namespace {

void CheckAccepted(const v1::Event& sent, const ingest::AcceptedRecord& record,
                   const ingest::ValidationLimits& limits) {
  TIDEMARK_FUZZ_CHECK(record.key == sent.device_id(), "the record key is the device id");

  v1::Event raw;
  TIDEMARK_FUZZ_CHECK(raw.ParseFromString(record.value),
                      "an accepted record decodes as consumers decode it");
  v1::Event expected = sent;
  expected.set_ingest_time_us(kNowUs);
  expected.clear_replayed();
  std::string diff;
  TIDEMARK_FUZZ_CHECK(SameMessage(raw, expected, &diff),
                      absl::StrCat("the raw record is the sent event, stamped: ", diff));

  // The aggregator and the writer map it through the same function.
  const absl::Duration lead = absl::Minutes(15);
  absl::StatusOr<std::vector<series::MappedPoint>> points = series::EventToPoints(raw, lead);
  TIDEMARK_FUZZ_CHECK(points.ok(), absl::StrCat("an accepted event maps to points: ",
                                                points.status().ToString(), " ", Describe(raw)));
  TIDEMARK_FUZZ_CHECK(points->size() == static_cast<size_t>(raw.measures_size()),
                      "one point per measure");
  for (const series::MappedPoint& p : *points) {
    TIDEMARK_FUZZ_CHECK(p.series_id == series::SeriesId(p.canonical_key),
                        "the series id hashes the canonical key");
    TIDEMARK_FUZZ_CHECK(p.version == (raw.has_version() ? raw.version() : kNowUs),
                        "version is the client's or the ingest time");
    TIDEMARK_FUZZ_CHECK(p.dimensions.at(std::string(series::kDeviceIdDimension)) ==
                            raw.device_id(),
                        "every series carries the device id");
    TIDEMARK_FUZZ_CHECK(p.time_us <= kNowUs + absl::ToInt64Microseconds(lead),
                        "a stored time is never beyond the future-clock lead");
  }

  // The writer stores every point of it: nothing ingest accepted is refused downstream.
  writer::BatchBuilder batch(lead, kNowUs - absl::ToInt64Microseconds(limits.retention));
  batch.Add(0, record.value);
  std::string refused;
  for (const auto& r : batch.rejections()) absl::StrAppend(&refused, r.message, "; ");
  TIDEMARK_FUZZ_CHECK(batch.rejections().empty(),
                      absl::StrCat("the writer refuses an accepted event: ", refused));
  TIDEMARK_FUZZ_CHECK(batch.points().size() == points->size(), "the writer stages every point");

  // The archive keeps it byte-exact: its JSON line reads back as the same event.
  const std::string line = archive::EventToJsonLine(raw, {"tidemark.raw", 3, 42});
  absl::StatusOr<v1::Event> back = archive::EventFromJsonLine(line);
  TIDEMARK_FUZZ_CHECK(back.ok(), absl::StrCat("an archived line reads back: ",
                                              back.status().ToString(), " ", line));
  v1::Event normalized = raw;
  // Fields this build does not know (a newer client's) have no column in the lake.
  normalized.DiscardUnknownFields();
  // Unspecified means milliseconds (event.proto); the archive writes the unit out.
  if (normalized.time_unit() == v1::TIME_UNIT_UNSPECIFIED) {
    normalized.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  }
  diff.clear();
  TIDEMARK_FUZZ_CHECK(SameMessage(*back, normalized, &diff),
                      absl::StrCat("the archive round trip keeps the event: ", diff, " ", line));
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  google::protobuf::RepeatedPtrField<v1::Event> events;
  if (!events.Add()->ParseFromArray(data, static_cast<int>(size))) return -1;
  const v1::Event& event = events[0];
  const ingest::ValidationLimits limits;

  const std::optional<ingest::Rejection> rejection =
      ingest::ValidateEvent(event, fuzz::kNowUs, limits);
  ingest::PreparedBatch batch =
      ingest::PrepareEvents(events, fuzz::kNowUs, /*first_index=*/7, limits);
  ingest::StampAccepted(batch, fuzz::kNowUs);
  TIDEMARK_FUZZ_CHECK(batch.accepted.size() + batch.rejected.size() == 1,
                      "each event is either accepted or rejected");
  // Write and WriteStream prepare the event from its bytes: the same decision, the same
  // record once decoded.
  ingest::PreparedBatch from_bytes = ingest::PrepareEncodedEvents(
      {absl::string_view(reinterpret_cast<const char*>(data), size)}, fuzz::kNowUs, 7, limits);
  ingest::StampAccepted(from_bytes, fuzz::kNowUs);
  TIDEMARK_FUZZ_CHECK(from_bytes.accepted.size() == batch.accepted.size() &&
                          (batch.rejected.empty() ||
                           from_bytes.rejected[0].reason() == batch.rejected[0].reason()),
                      "the bytes path decides as the message path does");
  if (!batch.accepted.empty()) {
    v1::Event a, b;
    std::string diff;
    TIDEMARK_FUZZ_CHECK(a.ParseFromString(batch.accepted[0].value) &&
                            b.ParseFromString(from_bytes.accepted[0].value) &&
                            fuzz::SameMessage(a, b, &diff) &&
                            from_bytes.accepted[0].key == batch.accepted[0].key,
                        absl::StrCat("the bytes path stores the same record: ", diff));
  }
  if (rejection.has_value()) {
    TIDEMARK_FUZZ_CHECK(batch.rejected.size() == 1, "a rejected event is reported");
    const v1::RejectedRecord& r = batch.rejected[0];
    TIDEMARK_FUZZ_CHECK(r.index() == 7, "the rejection names the record's index");
    TIDEMARK_FUZZ_CHECK(r.reason() == rejection->reason && r.reason() != v1::REJECT_REASON_UNSPECIFIED,
                        "the rejection carries the reason");
    TIDEMARK_FUZZ_CHECK(!r.message().empty() && !ingest::ReasonName(r.reason()).empty(),
                        "the rejection says why");
    return 0;
  }
  TIDEMARK_FUZZ_CHECK(batch.accepted.size() == 1, "a valid event is accepted");
  fuzz::CheckAccepted(event, batch.accepted[0], limits);
  return 0;
}
