#include "services/timestream-writer/aggregate_store.h"

#include <charconv>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/pqxx"
#include "services/timestream-writer/incarnation.h"

namespace tidemark::writer {
namespace {

// The shortest text that reads back as the same double.
std::string Num(double d) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, r.ptr);
}

constexpr const char* kUpsertSet =
    " ON CONFLICT (series_id, window_size, window_start) DO UPDATE SET"
    " count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,"
    " avg = excluded.avg, first = excluded.first, last = excluded.last,"
    " version = excluded.version, updated_at = excluded.updated_at"
    " WHERE excluded.version > aggregates.version";

// Whether two revisions of a window carry the same values, compared as the store compares
// them (IS DISTINCT FROM, under which NaN equals NaN; avg follows from sum and count).
bool SameValues(const v1::WindowAggregate& a, const v1::WindowAggregate& b) {
  auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  return a.count() == b.count() && same(a.sum(), b.sum()) && same(a.min(), b.min()) &&
         same(a.max(), b.max()) && same(a.first(), b.first()) && same(a.last(), b.last());
}

// Only aggregates whose series id is not stored under a different canonical key.
constexpr const char* kNoCollision =
    "NOT EXISTS (SELECT 1 FROM series s WHERE s.series_id = st.series_id"
    " AND s.canonical_key <> st.canonical_key)";

}  // namespace

AggregateStore::AggregateStore(std::string dsn, absl::Duration partitions_ahead,
                               absl::Duration change_retention)
    : dsn_(std::move(dsn)),
      partitions_ahead_(partitions_ahead),
      change_retention_(change_retention) {}

void AggregateStore::Reset() {
  conn_.reset();
  partitions_.Forget();
}

absl::Status AggregateStore::EnsureConnected() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  Reset();
  // Staging tables live per connection and empty themselves at each commit.
  absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(
      dsn_, {"CREATE TEMP TABLE IF NOT EXISTS staging_aggregates ("
             " source integer, series_id bigint, size_us bigint, start_us bigint, count bigint,"
             " sum double precision, min double precision, max double precision,"
             " avg double precision, first double precision, last double precision,"
             " version bigint, canonical_key text) ON COMMIT DELETE ROWS",
             "CREATE TEMP TABLE IF NOT EXISTS staging_repairs ("
             " series_id bigint, size_us bigint, start_us bigint, version bigint)"
             " ON COMMIT DELETE ROWS"});
  if (!c.ok()) return c.status();
  conn_ = *std::move(c);
  return absl::OkStatus();
}

absl::StatusOr<int> AggregateStore::MaintainPartitions(absl::Duration retention) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  absl::StatusOr<int> dropped = partitions_.Maintain(*conn_, partitions_ahead_, retention);
  if (!dropped.ok()) {
    Reset();
    return dropped;
  }
  try {
    pqxx::work tx(*conn_);
    tx.exec_params("SELECT tidemark_prune_aggregate_changes($1::interval)",
                   absl::StrCat(absl::ToInt64Seconds(change_retention_), " seconds"));
    tx.commit();
  } catch (const std::exception& e) {
    Reset();
    return pg::FromException(e);
  }
  return dropped;
}

absl::StatusOr<AggregateOutcome> AggregateStore::Write(
    const std::vector<SourcedAggregate>& aggregates) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // One revision per window: the highest version (a batch may hold several). The same version
  // twice is a replay when the values agree and a conflict when they do not, as it is against
  // a stored revision: the later record is refused, the earlier one stands.
  std::map<std::tuple<int64_t, int64_t, int64_t>, const SourcedAggregate*> latest;
  AggregateOutcome outcome;
  std::vector<int64_t> times;
  for (const SourcedAggregate& s : aggregates) {
    const v1::WindowAggregate& a = s.aggregate;
    auto [it, inserted] =
        latest.try_emplace({a.series().series_id(), a.window_size_us(), a.window_start_us()}, &s);
    times.push_back(a.window_start_us());
    if (inserted) continue;
    const v1::WindowAggregate& kept = it->second->aggregate;
    if (a.version() != kept.version()) {
      ++outcome.stale;
      if (a.version() > kept.version()) it->second = &s;
    } else if (!SameValues(a, kept)) {
      // existing_version gets the incarnation's base once it is read, below.
      outcome.conflicts.push_back({s.source, v1::REJECT_REASON_VERSION_CONFLICT,
                                   "same window and version as an earlier aggregate of the batch "
                                   "with different values",
                                   "", a.version()});
    }
  }
  const size_t in_batch_conflicts = outcome.conflicts.size();
  if (absl::Status s = partitions_.EnsureFor(*conn_, times); !s.ok()) {
    Reset();
    return s;
  }
  try {
    pqxx::work tx(*conn_);
    // Read in the transaction: another replica may have started a new incarnation.
    const int64_t version_base = VersionBase(tx);
    for (size_t i = 0; i < in_batch_conflicts; ++i) {
      *outcome.conflicts[i].existing_version += version_base;
    }
    {
      pqxx::stream_to copy(tx, "staging_aggregates");
      for (const auto& [key, s] : latest) {
        const v1::WindowAggregate& a = s->aggregate;
        copy << std::make_tuple(s->source, a.series().series_id(), a.window_size_us(),
                                a.window_start_us(), a.count(), Num(a.sum()), Num(a.min()),
                                Num(a.max()), Num(a.avg()), Num(a.first()), Num(a.last()),
                                version_base + a.version(), a.series().canonical_key());
      }
      copy.complete();
    }
    const pqxx::result upserted = tx.exec(absl::StrCat(
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max,"
        " avg, first, last, version, updated_at)"
        " SELECT series_id, interval '1 microsecond' * size_us,"
        " 'epoch'::timestamptz + interval '1 microsecond' * start_us, count, sum, min, max,"
        " avg, first, last, version, now() FROM staging_aggregates st WHERE ",
        kNoCollision, kUpsertSet));
    outcome.upserted = upserted.affected_rows();
    if (outcome.upserted < static_cast<int64_t>(latest.size())) {
      // Revisions the upsert left alone: older (stale) or the same version (a no-op when the
      // values agree, a conflict when they do not). Rows this transaction wrote are excluded.
      for (const pqxx::row& row : tx.exec(
               "SELECT st.source, a.version, st.version < a.version,"
               " st.version = a.version AND (st.count, st.sum, st.min, st.max, st.first, st.last)"
               "   IS DISTINCT FROM (a.count, a.sum, a.min, a.max, a.first, a.last)"
               " FROM staging_aggregates st JOIN aggregates a"
               " ON a.series_id = st.series_id"
               " AND a.window_size = interval '1 microsecond' * st.size_us"
               " AND a.window_start = 'epoch'::timestamptz + interval '1 microsecond' * st.start_us"
               " WHERE st.version <= a.version AND " +
               std::string(kNoCollision) +
               " AND a.xmin <> (txid_current() % 4294967296)::text::xid")) {
        if (row[2].as<bool>()) {
          ++outcome.stale;
        } else if (row[3].as<bool>()) {
          outcome.conflicts.push_back({row[0].as<size_t>(), v1::REJECT_REASON_VERSION_CONFLICT,
                                       "a different aggregate is stored with the same version", "",
                                       row[1].as<int64_t>()});
        }
      }
    }
    if (outcome.upserted < static_cast<int64_t>(latest.size())) {
      // The raw loop refuses the points of a series whose id is stored with another key;
      // their aggregates are refused the same way, so no window mixes two series.
      for (const pqxx::row& row :
           tx.exec("SELECT st.source FROM staging_aggregates st JOIN series s USING (series_id)"
                   " WHERE s.canonical_key <> st.canonical_key")) {
        outcome.conflicts.push_back({row[0].as<size_t>(), v1::REJECT_REASON_SERIES_COLLISION,
                                     "series id collides with a different stored series", "",
                                     std::nullopt});
      }
    }
    tx.commit();
  } catch (const std::exception& e) {
    Reset();
    return pg::FromException(e);
  }
  return outcome;
}

absl::StatusOr<int64_t> AggregateStore::Repair(const std::vector<SourcedLatePoint>& late) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The highest repair version of each window, and how far the raw store must be.
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> windows;
  std::map<std::pair<std::string, int32_t>, int64_t> needed;
  std::vector<int64_t> times;
  for (const SourcedLatePoint& s : late) {
    const v1::LatePoint& l = s.late;
    int64_t& need = needed[{l.raw_topic(), l.raw_partition()}];
    need = std::max(need, l.raw_offset() + 1);
    for (const v1::WindowRef& w : l.windows()) {
      int64_t& version = windows[{l.series().series_id(), w.window_size_us(), w.window_start_us()}];
      version = std::max(version, l.repair_version());
      times.push_back(w.window_start_us());
    }
  }
  if (absl::Status s = partitions_.EnsureFor(*conn_, times); !s.ok()) {
    Reset();
    return s;
  }
  try {
    pqxx::work tx(*conn_);
    const int64_t version_base = VersionBase(tx);
    for (const auto& [tp, need] : needed) {
      const pqxx::result r =
          tx.exec_params("SELECT next_offset FROM raw_progress WHERE topic = $1 AND partition = $2",
                         tp.first, tp.second);
      const int64_t stored = r.empty() ? 0 : r[0][0].as<int64_t>();
      if (stored < need) {
        return absl::UnavailableError(absl::StrCat("waiting for the raw writer: ", tp.first, "/",
                                                   tp.second, " is stored up to offset ", stored,
                                                   ", the repair needs ", need));
      }
    }
    {
      pqxx::stream_to copy(tx, "staging_repairs");
      for (const auto& [key, version] : windows) {
        copy << std::make_tuple(std::get<0>(key), std::get<1>(key), std::get<2>(key),
                                version_base + version);
      }
      copy.complete();
    }
    // Sums in time order, as the aggregator does, so that both give the same bits.
    const pqxx::result repaired = tx.exec(absl::StrCat(
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max,"
        " avg, first, last, version, updated_at)"
        " SELECT r.series_id, interval '1 microsecond' * r.size_us,"
        " 'epoch'::timestamptz + interval '1 microsecond' * r.start_us,"
        " count(*), sum(v.v ORDER BY p.time), min(v.v), max(v.v),"
        " sum(v.v ORDER BY p.time) / count(*),"
        " (array_agg(v.v ORDER BY p.time))[1], (array_agg(v.v ORDER BY p.time DESC))[1],"
        " r.version, now()"
        " FROM staging_repairs r JOIN points p ON p.series_id = r.series_id"
        " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * r.start_us"
        " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * (r.start_us + r.size_us)"
        " CROSS JOIN LATERAL (SELECT coalesce(p.value_double, p.value_int::double precision) AS v) "
        "v"
        " WHERE v.v IS NOT NULL"
        " GROUP BY r.series_id, r.size_us, r.start_us, r.version",
        // A repair raises the window's version even when it finds the stored values right:
        // a revision emitted before the late point (still on its way to the aggregates
        // loop) must not overwrite it afterwards. A replayed repair has the same version, so
        // it changes nothing.
        kUpsertSet));
    tx.commit();
    return static_cast<int64_t>(repaired.affected_rows());
  } catch (const std::exception& e) {
    Reset();
    return pg::FromException(e);
  }
}

}  // namespace tidemark::writer
