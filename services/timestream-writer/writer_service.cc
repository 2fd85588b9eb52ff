#include "services/timestream-writer/writer_service.h"

#include <algorithm>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "common/time/time_units.h"

namespace tidemark::writer {

constexpr const char* kPointBatchesHelp =
    "Batches of points stored, by how: copied straight into the table (no key stored yet) or "
    "through the versioned upsert";

RawPointSink::RawPointSink(PointStore& store, absl::Duration future_clock_lead,
                           absl::Duration retention, metrics::Registry& r)
    : store_(store),
      future_clock_lead_(future_clock_lead),
      retention_(retention),
      upserted_(r.AddCounter("tidemark_writer_points_upserted_total",
                             "Points inserted or replaced by a higher version")),
      stale_(r.AddCounter("tidemark_writer_points_stale_total",
                          "Points ignored because a higher version is stored")),
      unchanged_(r.AddCounter("tidemark_writer_points_unchanged_total",
                              "Points identical to the stored one (replays, duplicates)")),
      clock_corrected_(r.AddCounter("tidemark_writer_clock_corrected_total",
                                    "Points stored at their ingest time (clock out of sync)")),
      direct_batches_(
          r.AddCounter("tidemark_writer_point_batches_total", kPointBatchesHelp, "path=\"copy\"")),
      upsert_batches_(r.AddCounter("tidemark_writer_point_batches_total", kPointBatchesHelp,
                                   "path=\"upsert\"")) {}

namespace {

/// A raw batch decoded ahead of its store.
struct DecodedBatch final : kafka::PreparedBatch {
  DecodedBatch(absl::Duration future_clock_lead, int64_t horizon_us, series::SeriesNames& names)
      : batch(future_clock_lead, horizon_us, &names) {}
  BatchBuilder batch;
  std::map<std::pair<std::string, int32_t>, int64_t> progress;
};

}  // namespace

std::unique_ptr<kafka::PreparedBatch> RawPointSink::Prepare(
    const std::vector<const kafka::Message*>& records) {
  const int64_t horizon = time::ToMicros(absl::Now()) - absl::ToInt64Microseconds(retention_);
  auto decoded = std::make_unique<DecodedBatch>(future_clock_lead_, horizon, names_);
  for (size_t i = 0; i < records.size(); ++i) {
    decoded->batch.Add(i, records[i]->value());
    int64_t& next = decoded->progress[{std::string(records[i]->topic()), records[i]->partition()}];
    next = std::max(next, records[i]->offset() + 1);
  }
  return decoded;
}

absl::StatusOr<std::vector<PointRejection>> RawPointSink::Write(
    const std::vector<const kafka::Message*>& records) {
  return WritePrepared(records, Prepare(records));
}

absl::StatusOr<std::vector<PointRejection>> RawPointSink::WritePrepared(
    const std::vector<const kafka::Message*>& records,
    std::unique_ptr<kafka::PreparedBatch> prepared) {
  if (prepared == nullptr) prepared = Prepare(records);
  auto& decoded = static_cast<DecodedBatch&>(*prepared);
  BatchBuilder& batch = decoded.batch;
  absl::StatusOr<WriteOutcome> outcome = store_.Write(batch, decoded.progress);
  if (!outcome.ok()) return outcome.status();
  upserted_.Add(outcome->upserted);
  stale_.Add(outcome->stale + batch.counters().stale);
  unchanged_.Add(outcome->unchanged + batch.counters().duplicates);
  clock_corrected_.Add(batch.counters().clock_corrected);
  (outcome->direct_copy ? direct_batches_ : upsert_batches_).Add();
  std::vector<PointRejection> rejections = std::move(batch.rejections());
  for (PointRejection& r : outcome->conflicts) rejections.push_back(std::move(r));
  return rejections;
}

AggregateSink::AggregateSink(AggregateStore& store, metrics::Registry& r)
    : store_(store),
      upserted_(r.AddCounter("tidemark_writer_aggregates_upserted_total",
                             "Window aggregates inserted or replaced by a higher version")),
      stale_(r.AddCounter("tidemark_writer_aggregates_stale_total",
                          "Window aggregates older than the stored revision")) {}

absl::StatusOr<std::vector<PointRejection>> AggregateSink::Write(
    const std::vector<const kafka::Message*>& records) {
  std::vector<SourcedAggregate> aggregates;
  std::vector<PointRejection> rejections;
  for (size_t i = 0; i < records.size(); ++i) {
    SourcedAggregate& s = aggregates.emplace_back();
    s.source = i;
    if (!s.aggregate.ParseFromArray(records[i]->value().data(),
                                    static_cast<int>(records[i]->value().size()))) {
      aggregates.pop_back();
      rejections.push_back({i, v1::REJECT_REASON_UNDECODABLE,
                            "record is not a tidemark.v1.WindowAggregate", "", std::nullopt});
    } else if (std::optional<series::Problem> problem = CheckAggregate(s.aggregate)) {
      rejections.push_back({i, problem->reason, std::move(problem->message),
                            s.aggregate.series().measure_name(), std::nullopt});
      aggregates.pop_back();
    }
  }
  absl::StatusOr<AggregateOutcome> outcome = store_.Write(aggregates);
  if (!outcome.ok()) return outcome.status();
  upserted_.Add(outcome->upserted);
  stale_.Add(outcome->stale);
  for (PointRejection& r : outcome->conflicts) rejections.push_back(std::move(r));
  return rejections;
}

RepairSink::RepairSink(AggregateStore& store, metrics::Registry& r)
    : store_(store),
      repaired_(r.AddCounter("tidemark_writer_windows_repaired_total",
                             "Windows recomputed from stored raw points for late points")) {}

absl::StatusOr<std::vector<PointRejection>> RepairSink::Write(
    const std::vector<const kafka::Message*>& records) {
  std::vector<SourcedLatePoint> late;
  std::vector<PointRejection> rejections;
  for (size_t i = 0; i < records.size(); ++i) {
    SourcedLatePoint& s = late.emplace_back();
    s.source = i;
    if (!s.late.ParseFromArray(records[i]->value().data(),
                               static_cast<int>(records[i]->value().size()))) {
      late.pop_back();
      rejections.push_back({i, v1::REJECT_REASON_UNDECODABLE,
                            "record is not a tidemark.v1.LatePoint", "", std::nullopt});
    } else if (std::optional<series::Problem> problem = CheckLatePoint(s.late)) {
      rejections.push_back({i, problem->reason, std::move(problem->message),
                            s.late.series().measure_name(), std::nullopt});
      late.pop_back();
    }
  }
  absl::StatusOr<int64_t> repaired = store_.Repair(late);
  if (!repaired.ok()) return repaired.status();
  repaired_.Add(*repaired);
  return rejections;
}

}  // namespace tidemark::writer
