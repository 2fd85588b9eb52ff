// Decoding tidemark.raw records as the consumers do: the writer's batch builder and the
// shared event -> points mapping the aggregator windows with.
// Input: up to eight Kafka record values (serialized events, or anything a producer wrote).
//
// Properties: the consumers' in-place decoder (series::EventView) accepts exactly the records
// protobuf parses, with the same values; the writer refuses every record the aggregator cannot decode or map, and never
// calls undecodable one that the aggregator windows; the mapping is deterministic and
// independent of the wire order of map entries; a series id is the hash of its canonical key,
// and one canonical key names one measure of one dimension set; a batch stages each
// (series, time) once, every staged point comes from a decodable record of the batch, every
// refusal names one, and every staged point's series is in the batch's series rows.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/series/event_points.h"
#include "common/series/series_key.h"
#include "common/series/event_view.h"
#include "fuzz/fuzz_support.h"
#include "services/timestream-writer/writer_core.h"
#include "tests/support/event_view_check.h"

namespace tidemark::fuzz {
namespace {

const absl::Duration kLead = absl::Minutes(15);

bool SamePoints(const std::vector<series::MappedPoint>& a,
                const std::vector<series::MappedPoint>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].series_id != b[i].series_id || a[i].canonical_key != b[i].canonical_key ||
        a[i].measure_name != b[i].measure_name || a[i].dimensions != b[i].dimensions ||
        a[i].time_us != b[i].time_us || a[i].clock_corrected != b[i].clock_corrected ||
        a[i].version != b[i].version || a[i].ingest_time_us != b[i].ingest_time_us ||
        !SameMessage(a[i].value, b[i].value)) {
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  using namespace tidemark::fuzz;
  FuzzedDataProvider in(data, size);
  std::vector<std::string> records;
  while (in.remaining_bytes() > 0 && records.size() < 8) {
    records.push_back(records.size() == 7 ? in.ConsumeRemainingBytesAsString()
                                          : in.ConsumeRandomLengthString(4096));
  }

  // What the aggregator makes of each record.
  std::vector<bool> decodable(records.size(), false);
  std::map<std::string, std::pair<std::string, std::map<std::string, std::string>>> keys;
  series::EventView view;
  for (size_t i = 0; i < records.size(); ++i) {
    v1::Event event;
    const bool parsed =
        event.ParseFromArray(records[i].data(), static_cast<int>(records[i].size()));
    TIDEMARK_FUZZ_CHECK(view.Parse(records[i]) == parsed,
                        "the in-place decoder accepts exactly what protobuf parses");
    if (!parsed) continue;
    const std::string difference = testing::EventViewDifference(view, event);
    TIDEMARK_FUZZ_CHECK(difference.empty(), "the in-place decoder reads another " + difference);
    absl::StatusOr<std::vector<series::MappedPoint>> points = series::EventToPoints(event, kLead);
    if (!points.ok()) continue;
    decodable[i] = true;

    absl::StatusOr<std::vector<series::MappedPoint>> again = series::EventToPoints(event, kLead);
    TIDEMARK_FUZZ_CHECK(again.ok() && SamePoints(*points, *again), "the mapping is deterministic");
    // The same event as another producer may have serialized it (map entries reversed).
    v1::Event reordered;
    reordered.CopyFrom(event);
    reordered.clear_dimensions();
    reordered.clear_measures();
    std::vector<std::pair<std::string, std::string>> dims(event.dimensions().begin(),
                                                          event.dimensions().end());
    for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
      (*reordered.mutable_dimensions())[it->first] = it->second;
    }
    std::vector<std::pair<std::string, v1::MeasureValue>> measures(event.measures().begin(),
                                                                   event.measures().end());
    for (auto it = measures.rbegin(); it != measures.rend(); ++it) {
      (*reordered.mutable_measures())[it->first] = it->second;
    }
    std::string wire;
    reordered.SerializeToString(&wire);
    v1::Event reparsed;
    TIDEMARK_FUZZ_CHECK(reparsed.ParseFromString(wire), "a decoded event re-serializes");
    again = series::EventToPoints(reparsed, kLead);
    TIDEMARK_FUZZ_CHECK(again.ok() && SamePoints(*points, *again),
                        "the mapping does not depend on the order of map entries");

    for (const series::MappedPoint& p : *points) {
      TIDEMARK_FUZZ_CHECK(p.series_id == series::SeriesId(p.canonical_key),
                          "the series id hashes the canonical key");
      auto [it, inserted] = keys.try_emplace(p.canonical_key, p.measure_name, p.dimensions);
      TIDEMARK_FUZZ_CHECK(
          inserted || (it->second.first == p.measure_name && it->second.second == p.dimensions),
          absl::StrCat("canonical key ", p.canonical_key, " names two different series"));
    }
  }

  // What the writer makes of the same records as one batch.
  writer::BatchBuilder batch(kLead, /*retention_horizon_us=*/kNowUs - int64_t{7} * 86'400'000'000);
  for (size_t i = 0; i < records.size(); ++i) batch.Add(i, records[i]);

  std::set<size_t> refused;
  for (const writer::PointRejection& r : batch.rejections()) {
    TIDEMARK_FUZZ_CHECK(r.source < records.size(), "a refusal names a record of the batch");
    TIDEMARK_FUZZ_CHECK(r.reason != v1::REJECT_REASON_UNSPECIFIED && !r.message.empty(),
                        "a refusal has a reason and says why");
    TIDEMARK_FUZZ_CHECK(r.reason != v1::REJECT_REASON_UNDECODABLE || !decodable[r.source],
                        absl::StrCat("the writer cannot decode record ", r.source,
                                     " that the aggregator windows: ", r.message));
    refused.insert(r.source);
  }
  for (size_t i = 0; i < records.size(); ++i) {
    TIDEMARK_FUZZ_CHECK(decodable[i] || refused.contains(i),
                        absl::StrCat("record ", i, " that the aggregator cannot decode is "
                                     "neither stored nor refused by the writer"));
  }

  std::map<int64_t, std::string> series_keys;
  for (const writer::SeriesRow& row : batch.series()) {
    TIDEMARK_FUZZ_CHECK(row.series_id == series::SeriesId(row.canonical_key),
                        "a series row's id hashes its key");
    TIDEMARK_FUZZ_CHECK(series_keys.emplace(row.series_id, row.canonical_key).second,
                        "one row per series");
  }
  std::set<std::pair<int64_t, int64_t>> staged;
  for (const writer::StagedPoint& p : batch.points()) {
    TIDEMARK_FUZZ_CHECK(p.source < records.size() && decodable[p.source],
                        "a staged point comes from a decodable record of the batch");
    TIDEMARK_FUZZ_CHECK(staged.emplace(p.series_id, p.time_us).second,
                        "a batch stages each (series, time) once");
    TIDEMARK_FUZZ_CHECK(series_keys.contains(p.series_id), "a staged point's series has a row");
  }
  return 0;
}
