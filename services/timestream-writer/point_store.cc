#include "services/timestream-writer/point_store.h"

#include <charconv>
#include <cstdio>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/pqxx"
#include "pqxx/transaction"
#include "services/timestream-writer/schema.h"

namespace tidemark::writer {
namespace {

// Exact integer arithmetic; to_timestamp(double) would round at microseconds.
constexpr const char* kTimeFromMicros = "'epoch'::timestamptz + interval '1 microsecond' * ";

// The shortest text that reads back as the same double (std::to_chars; several times faster
// than printf's %.17g, which showed in the writer's profile).
std::string FormatDouble(double d) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, r.ptr);
}

size_t KeyHash(const std::string& canonical_key) {
  return absl::Hash<absl::string_view>()(canonical_key);
}

}  // namespace

PointStore::PointStore(std::string dsn, absl::Duration partitions_ahead)
    : dsn_(std::move(dsn)), partitions_ahead_(partitions_ahead) {}

void PointStore::Reset() {
  conn_.reset();
  known_series_.clear();
  partitions_.Forget();
}

absl::Status PointStore::EnsureConnected() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  Reset();
  // Staging tables live per connection and empty themselves at each commit.
  absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(
      dsn_, {"CREATE TEMP TABLE IF NOT EXISTS staging_points ("
             " source integer, series_id bigint, time_us bigint, value_double double precision,"
             " value_int bigint, value_bool boolean, value_string text, version bigint,"
             " ingested_us bigint) ON COMMIT DELETE ROWS",
             "CREATE TEMP TABLE IF NOT EXISTS staging_series ("
             " series_id bigint, canonical_key text, measure_name text, device_id text,"
             " dimensions jsonb) ON COMMIT DELETE ROWS"});
  if (!c.ok()) return c.status();
  conn_ = *std::move(c);
  return absl::OkStatus();
}

absl::Status PointStore::Open(spdlog::logger& logger) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  absl::Status s = pg::ApplyMigrations(*conn_, SchemaMigrations(), logger);
  if (!s.ok()) Reset();
  return s;
}

absl::StatusOr<int> PointStore::MaintainPartitions(absl::Duration retention) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  absl::StatusOr<int> dropped = partitions_.Maintain(*conn_, partitions_ahead_, retention);
  if (!dropped.ok()) Reset();
  return dropped;
}

absl::StatusOr<WriteOutcome> PointStore::Write(
    BatchBuilder& batch, const std::map<std::pair<std::string, int32_t>, int64_t>& progress) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // Partition DDL runs in its own short transaction, before the batch's.
  std::vector<int64_t> times;
  times.reserve(batch.points().size());
  for (const StagedPoint& p : batch.points()) times.push_back(p.time_us);
  if (absl::Status s = partitions_.EnsureFor(*conn_, times); !s.ok()) {
    Reset();
    return s;
  }
  WriteOutcome outcome;
  std::vector<std::pair<int64_t, size_t>> new_series;
  try {
    pqxx::work tx(*conn_);
    // 1. Series not yet known to this connection: insert, then drop colliding ids from the
    //    batch (their canonical key differs from the stored one). Known ids are compared
    //    with the key this connection stored for them.
    std::vector<SeriesRow> unknown;
    std::vector<int64_t> colliding;
    for (SeriesRow& row : batch.series()) {
      auto known = known_series_.find(row.series_id);
      if (known == known_series_.end()) {
        unknown.push_back(std::move(row));
      } else if (known->second != KeyHash(row.canonical_key)) {
        colliding.push_back(row.series_id);
      }
    }
    if (!unknown.empty()) {
      {
        pqxx::stream_to copy(tx, "staging_series");
        for (const SeriesRow& r : unknown) {
          copy << std::make_tuple(r.series_id, r.canonical_key, r.measure_name, r.device_id,
                                  r.dimensions_json);
        }
        copy.complete();
      }
      tx.exec0(
          "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
          " SELECT series_id, canonical_key, measure_name, device_id, dimensions"
          " FROM staging_series ON CONFLICT (series_id) DO NOTHING");
      absl::flat_hash_set<int64_t> stored_elsewhere;
      for (const pqxx::row& row :
           tx.exec("SELECT st.series_id FROM staging_series st JOIN series s USING (series_id)"
                   " WHERE s.canonical_key <> st.canonical_key")) {
        colliding.push_back(row[0].as<int64_t>());
        stored_elsewhere.insert(row[0].as<int64_t>());
      }
      for (const SeriesRow& r : unknown) {
        if (!stored_elsewhere.contains(r.series_id)) new_series.emplace_back(r.series_id, KeyHash(r.canonical_key));
      }
    }
    batch.DropSeries(colliding, "series id collides with a different stored series");

    // 2. The points, by COPY, with NULL in the value columns a point does not use.
    const std::vector<StagedPoint>& points = batch.points();
    {
      pqxx::stream_to copy(tx, "staging_points");
      std::string num, time_us, version, ingested, source, series_id;
      for (const StagedPoint& p : points) {
        source = absl::StrCat(p.source);
        series_id = absl::StrCat(p.series_id);
        time_us = absl::StrCat(p.time_us);
        version = absl::StrCat(p.version);
        ingested = absl::StrCat(p.ingest_time_us);
        const char* d = nullptr;
        const char* i = nullptr;
        const char* b = nullptr;
        const char* s = nullptr;
        switch (p.value.value_case()) {
          case v1::MeasureValue::kDoubleValue:
            num = FormatDouble(p.value.double_value());
            d = num.c_str();
            break;
          case v1::MeasureValue::kInt64Value:
            num = absl::StrCat(p.value.int64_value());
            i = num.c_str();
            break;
          case v1::MeasureValue::kBoolValue:
            b = p.value.bool_value() ? "t" : "f";
            break;
          case v1::MeasureValue::kStringValue:
            s = p.value.string_value().c_str();
            break;
          case v1::MeasureValue::VALUE_NOT_SET:
            break;
        }
        copy << std::make_tuple(source.c_str(), series_id.c_str(), time_us.c_str(), d, i, b, s,
                                version.c_str(), ingested.c_str());
      }
      copy.complete();
    }
    // 3. One versioned upsert for the whole batch.
    const pqxx::result upserted = tx.exec(absl::StrCat(
        "INSERT INTO points (series_id, time, value_double, value_int, value_bool,"
        " value_string, version, ingested_at)"
        " SELECT series_id, ",
        kTimeFromMicros, "time_us, value_double, value_int, value_bool, value_string, version, ",
        kTimeFromMicros,
        "ingested_us FROM staging_points"
        " ON CONFLICT (series_id, time) DO UPDATE SET"
        " value_double = excluded.value_double, value_int = excluded.value_int,"
        " value_bool = excluded.value_bool, value_string = excluded.value_string,"
        " version = excluded.version, ingested_at = excluded.ingested_at"
        " WHERE excluded.version > points.version"));
    outcome.upserted = upserted.affected_rows();
    for (const auto& [tp, next_offset] : progress) {
      tx.exec_params0(
          "INSERT INTO raw_progress (topic, partition, next_offset) VALUES ($1, $2, $3)"
          " ON CONFLICT (topic, partition) DO UPDATE"
          " SET next_offset = greatest(raw_progress.next_offset, excluded.next_offset)",
          tp.first, tp.second, next_offset);
    }
    // 4. Points the upsert left alone are stale, unchanged or conflicting. Only then (replays,
    //    duplicates, late corrections) compare them with the stored rows this transaction
    //    did not write, which are still as they were before the batch.
    absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> conflict_version;
    if (outcome.upserted < static_cast<int64_t>(points.size())) {
      const pqxx::result classified = tx.exec(
          absl::StrCat("SELECT st.source, st.series_id, p.version, st.version < p.version AS stale,"
                       " st.version = p.version AND ("
                       "   p.value_double IS DISTINCT FROM st.value_double OR"
                       "   p.value_int IS DISTINCT FROM st.value_int OR"
                       "   p.value_bool IS DISTINCT FROM st.value_bool OR"
                       "   p.value_string IS DISTINCT FROM st.value_string) AS conflict"
                       " FROM staging_points st JOIN points p"
                       " ON p.series_id = st.series_id AND p.time = ",
                       kTimeFromMicros,
                       "st.time_us WHERE st.version <= p.version"
                       " AND p.xmin <> (txid_current() % 4294967296)::text::xid"));
      for (const pqxx::row& row : classified) {
        if (row[3].as<bool>()) {
          ++outcome.stale;
        } else if (row[4].as<bool>()) {
          conflict_version[{row[0].as<int64_t>(), row[1].as<int64_t>()}] = row[2].as<int64_t>();
        } else {
          ++outcome.unchanged;
        }
      }
    }
    tx.commit();
    for (const StagedPoint& p : points) {
      auto it = conflict_version.find({static_cast<int64_t>(p.source), p.series_id});
      if (it == conflict_version.end()) continue;
      outcome.conflicts.push_back({p.source, v1::REJECT_REASON_VERSION_CONFLICT,
                                   "a different value is stored with the same version",
                                   p.measure_name, it->second});
    }
  } catch (const std::exception& e) {
    Reset();
    return pg::FromException(e);
  }
  for (const auto& [id, key_hash] : new_series) known_series_.emplace(id, key_hash);
  return outcome;
}

}  // namespace tidemark::writer
