#include "services/timestream-writer/point_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>
#include <tuple>

#include "absl/base/internal/endian.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/largeobject"
#include "pqxx/pqxx"
#include "pqxx/transaction"
#include "services/timestream-writer/schema.h"

namespace tidemark::writer {
namespace {

// PostgreSQL's binary timestamps count microseconds from 2000-01-01 00:00:00 UTC.
constexpr int64_t kPostgresEpochUs = 946'684'800'000'000;

constexpr const char* kCopyPoints = "COPY staging_points FROM STDIN (FORMAT binary)";

// A batch whose keys are all new goes straight into the table: COPY inserts rows in bulk
// (heap_multi_insert, batched WAL), where the upsert inserts and logs them one by one.
constexpr const char* kCopyPointsDirect =
    "COPY points (series_id, time, value_double, value_int, value_bool, value_string, version,"
    " ingested_at) FROM STDIN (FORMAT binary)";

// After a batch met stored keys, the next ones are likely to as well (a replay, a backfill):
// they go through the upsert for a while before the direct COPY is tried again.
constexpr int kUpsertBatchesAfterConflict = 8;

// Staged rows carry timestamps already, so the upsert moves them without an expression per row.
constexpr const char* kUpsertPoints =
    "INSERT INTO points (series_id, time, value_double, value_int, value_bool, value_string,"
    " version, ingested_at)"
    " SELECT series_id, time, value_double, value_int, value_bool, value_string, version,"
    " ingested_at FROM staging_points"
    " ON CONFLICT (series_id, time) DO UPDATE SET"
    " value_double = excluded.value_double, value_int = excluded.value_int,"
    " value_bool = excluded.value_bool, value_string = excluded.value_string,"
    " version = excluded.version, ingested_at = excluded.ingested_at"
    " WHERE excluded.version > points.version";

// The stored rows a batch's points met without replacing them (older or equal versions that
// this transaction did not write), for counting stale, unchanged and conflicting points.
constexpr const char* kClassifyPoints =
    "SELECT st.source, st.series_id, p.version, st.version < p.version AS stale,"
    " st.version = p.version AND ("
    "   p.value_double IS DISTINCT FROM st.value_double OR"
    "   p.value_int IS DISTINCT FROM st.value_int OR"
    "   p.value_bool IS DISTINCT FROM st.value_bool OR"
    "   p.value_string IS DISTINCT FROM st.value_string) AS conflict"
    " FROM staging_points st JOIN points p ON p.series_id = st.series_id AND p.time = st.time"
    " WHERE st.version <= p.version AND p.xmin <> (txid_current() % 4294967296)::text::xid";

// Every partition of one topic in one statement: a batch spans up to all of them.
constexpr const char* kUpsertProgress =
    "INSERT INTO raw_progress (topic, partition, next_offset)"
    " SELECT $1, p, o FROM unnest($2::integer[], $3::bigint[]) AS u(p, o)"
    " ON CONFLICT (topic, partition) DO UPDATE"
    " SET next_offset = greatest(raw_progress.next_offset, excluded.next_offset)";

/// Rows in PostgreSQL's binary COPY format. Binary spares the client printing and the server
/// parsing every number as text (float8in was the largest single cost of the text COPY).
class BinaryCopy final {
 public:
  explicit BinaryCopy(size_t rows_hint) {
    buf_.reserve(19 + rows_hint * 96 + 2);
    buf_.append("PGCOPY\n\377\r\n\0", 11);
    Put32(0);  // flags
    Put32(0);  // header extension length
  }
  void Row(int16_t fields) { Put16(static_cast<uint16_t>(fields)); }
  void Null() { Put32(static_cast<uint32_t>(-1)); }
  void Int4(int32_t v) {
    Put32(4);
    Put32(static_cast<uint32_t>(v));
  }
  void Int8(int64_t v) {
    Put32(8);
    Put64(static_cast<uint64_t>(v));
  }
  void Float8(double v) {
    Put32(8);
    Put64(std::bit_cast<uint64_t>(v));
  }
  void Bool(bool v) {
    Put32(1);
    buf_.push_back(v ? 1 : 0);
  }
  void Text(const std::string& v) {
    Put32(static_cast<uint32_t>(v.size()));
    buf_.append(v);
  }
  void TimestampUs(int64_t unix_us) { Int8(unix_us - kPostgresEpochUs); }
  /// The data with its trailer; the buffer is spent.
  std::string& Finish() {
    Put16(0xffff);
    return buf_;
  }

 private:
  void Put16(uint16_t v) {
    v = absl::gbswap_16(v);
    buf_.append(reinterpret_cast<const char*>(&v), 2);
  }
  void Put32(uint32_t v) {
    v = absl::gbswap_32(v);
    buf_.append(reinterpret_cast<const char*>(&v), 4);
  }
  void Put64(uint64_t v) {
    v = absl::gbswap_64(v);
    buf_.append(reinterpret_cast<const char*>(&v), 8);
  }
  std::string buf_;
};

/// libpqxx 6.4 streams COPY in text format only; its largeobject class hands the libpq handle
/// of a transaction to subclasses, which is what a binary COPY needs.
class RawConnection final : pqxx::largeobject {
 public:
  static PGconn* Of(const pqxx::dbtransaction& tx) { return raw_connection(tx); }
};

/// Runs `copy_sql` (COPY ... FROM STDIN (FORMAT binary)) in `tx` with `data`. Failures throw
/// the libpqxx exceptions pg::FromException classifies, as libpqxx's own calls would.
void CopyBinary(pqxx::dbtransaction& tx, const char* copy_sql, const std::string& data) {
  tx.exec(copy_sql);
  PGconn* conn = RawConnection::Of(tx);
  // libpq takes an int length; large batches go in slices.
  constexpr size_t kSlice = 1 << 20;
  for (size_t at = 0; at < data.size(); at += kSlice) {
    const int n = static_cast<int>(std::min(kSlice, data.size() - at));
    if (PQputCopyData(conn, data.data() + at, n) != 1) {
      throw pqxx::broken_connection(PQerrorMessage(conn));
    }
  }
  if (PQputCopyEnd(conn, nullptr) != 1) throw pqxx::broken_connection(PQerrorMessage(conn));
  std::optional<pqxx::sql_error> error;
  while (PGresult* r = PQgetResult(conn)) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && !error) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      error.emplace(PQresultErrorMessage(r), copy_sql, state != nullptr ? state : "");
    }
    PQclear(r);
  }
  if (PQstatus(conn) != CONNECTION_OK) throw pqxx::broken_connection(PQerrorMessage(conn));
  if (error) throw *error;
}

/// The `{1,2,3}` array literal of integers.
template <typename Int>
std::string IntArray(const std::vector<Int>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) absl::StrAppend(&out, i ? "," : "", v[i]);
  return out + "}";
}

/// The points in binary COPY format: for the points table, or with the batch index of each
/// point first for the staging table.
std::string EncodePoints(const std::vector<const StagedPoint*>& points, bool with_source) {
  BinaryCopy copy(points.size());
  for (const StagedPoint* point : points) {
    const StagedPoint& p = *point;
    copy.Row(with_source ? 9 : 8);
    if (with_source) copy.Int4(static_cast<int32_t>(p.source));
    copy.Int8(p.series_id);
    copy.TimestampUs(p.time_us);
    const v1::MeasureValue::ValueCase type = p.value.value_case();
    type == v1::MeasureValue::kDoubleValue ? copy.Float8(p.value.double_value()) : copy.Null();
    type == v1::MeasureValue::kInt64Value ? copy.Int8(p.value.int64_value()) : copy.Null();
    type == v1::MeasureValue::kBoolValue ? copy.Bool(p.value.bool_value()) : copy.Null();
    type == v1::MeasureValue::kStringValue ? copy.Text(p.value.string_value()) : copy.Null();
    copy.Int8(p.version);
    copy.TimestampUs(p.ingest_time_us);
  }
  return std::move(copy.Finish());
}

size_t KeyHash(const std::string& canonical_key) {
  return absl::Hash<absl::string_view>()(canonical_key);
}

}  // namespace

PointStore::PointStore(std::string dsn, absl::Duration partitions_ahead, bool try_direct_copy,
                       size_t known_series_limit)
    : dsn_(std::move(dsn)),
      partitions_ahead_(partitions_ahead),
      known_series_limit_(known_series_limit),
      try_direct_copy_(try_direct_copy) {}

void PointStore::Reset() {
  conn_.reset();
  upsert_batches_left_ = 0;
  known_series_.clear();
  partitions_.Forget();
}

absl::Status PointStore::EnsureConnected() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  Reset();
  // Staging tables live per connection and empty themselves at each commit.
  absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(
      dsn_, {"CREATE TEMP TABLE IF NOT EXISTS staging_points ("
             " source integer, series_id bigint, time timestamptz, value_double double precision,"
             " value_int bigint, value_bool boolean, value_string text, version bigint,"
             " ingested_at timestamptz) ON COMMIT DELETE ROWS",
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
        if (!stored_elsewhere.contains(r.series_id))
          new_series.emplace_back(r.series_id, KeyHash(r.canonical_key));
      }
    }
    batch.DropSeries(colliding, "series id collides with a different stored series");

    // 2. The points by binary COPY, with NULL in the value columns a point does not use: into
    //    the table when no key is stored yet (a unique violation says otherwise and is rolled
    //    back to the savepoint), else into the staging table for the versioned upsert.
    const std::vector<StagedPoint>& points = batch.points();
    // In key order, so that inserts walk the primary key's leaf pages in order instead of
    // jumping between series on every row.
    std::vector<const StagedPoint*> ordered;
    ordered.reserve(points.size());
    for (const StagedPoint& p : points) ordered.push_back(&p);
    std::sort(ordered.begin(), ordered.end(), [](const StagedPoint* a, const StagedPoint* b) {
      return std::tie(a->series_id, a->time_us) < std::tie(b->series_id, b->time_us);
    });
    const bool try_copy = try_direct_copy_ && upsert_batches_left_ == 0;
    if (upsert_batches_left_ > 0) --upsert_batches_left_;
    if (try_copy) {
      tx.exec0("SAVEPOINT direct_copy");
      try {
        CopyBinary(tx, kCopyPointsDirect, EncodePoints(ordered, /*with_source=*/false));
        outcome.direct_copy = true;
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "23505") throw;  // only a stored key sends the batch to the upsert
        upsert_batches_left_ = kUpsertBatchesAfterConflict;
      }
      // Back in the transaction itself either way: the classification below tells this
      // transaction's rows by their xmin, which must not be a subtransaction's.
      if (!outcome.direct_copy) tx.exec0("ROLLBACK TO SAVEPOINT direct_copy");
      tx.exec0("RELEASE SAVEPOINT direct_copy");
    }
    if (outcome.direct_copy) {
      outcome.upserted = static_cast<int64_t>(points.size());
    } else {
      CopyBinary(tx, kCopyPoints, EncodePoints(ordered, /*with_source=*/true));
    }
    // 3. One versioned upsert for the whole batch, and the progress of each topic.
    if (!outcome.direct_copy) outcome.upserted = tx.exec(kUpsertPoints).affected_rows();
    std::map<std::string, std::pair<std::vector<int32_t>, std::vector<int64_t>>> by_topic;
    for (const auto& [tp, next_offset] : progress) {
      auto& [partitions, offsets] = by_topic[tp.first];
      partitions.push_back(tp.second);
      offsets.push_back(next_offset);
    }
    for (const auto& [topic, po] : by_topic) {
      tx.exec_params0(kUpsertProgress, topic, IntArray(po.first), IntArray(po.second));
    }
    // 4. Points the upsert left alone are stale, unchanged or conflicting. Only then (replays,
    //    duplicates, late corrections) compare them with the stored rows this transaction
    //    did not write, which are still as they were before the batch.
    absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> conflict_version;
    if (!outcome.direct_copy && outcome.upserted < static_cast<int64_t>(points.size())) {
      for (const pqxx::row& row : tx.exec(kClassifyPoints)) {
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
  // A memo: forgetting it costs the next batches a series insert that finds the rows there.
  if (known_series_.size() + new_series.size() > known_series_limit_) known_series_.clear();
  for (const auto& [id, key_hash] : new_series) known_series_.emplace(id, key_hash);
  return outcome;
}

}  // namespace tidemark::writer
