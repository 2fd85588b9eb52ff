#include "services/query/query_store.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pg/pg.h"
#include "nlohmann/json.hpp"
#include "pqxx/pqxx"

namespace tidemark::query {
namespace {

// The series a selector covers; $1 measure ('' = any), $2 equal matchers (jsonb object),
// $3 not-equal matchers (jsonb array of objects), $4 regular-expression matchers (jsonb array
// of {name, pattern, negate}; a missing dimension matches as ''), $5 series ids (bigint[],
// empty = any). Queries number their own parameters from $6. Queries select the series first
// (in a MATERIALIZED CTE, or as ids fetched before reading), so the matchers run once per
// series rather than once per row read.
// Every statement is planned with its parameters' values (libpq's unnamed statement), so a
// matcher the selector does not use folds away with its guard ($3 = '[]', ...). Unguarded, the
// two NOT EXISTS became anti-joins that PostgreSQL estimated to leave one series of any
// number: it then sorted every selected series to find the first few by id (165 ms for the
// 250,000 series of a measure among 1,000,000) instead of walking the primary key (0.1 ms).
constexpr const char* kSeriesFilter =
    "($1 = '' OR s.measure_name = $1)"
    " AND ($2::jsonb = '{}' OR s.dimensions @> $2::jsonb)"
    " AND ($3::jsonb = '[]' OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) ne"
    "                                      WHERE s.dimensions @> ne))"
    " AND ($4::jsonb = '[]' OR NOT EXISTS (SELECT 1 FROM jsonb_to_recordset($4::jsonb)"
    "                   AS re(name text, pattern text, negate boolean)"
    "                 WHERE (coalesce(s.dimensions->>re.name, '') ~ re.pattern) = re.negate))"
    " AND (cardinality($5::bigint[]) = 0 OR s.series_id = ANY($5::bigint[]))";

void FillSeries(const pqxx::row& row, v1::Series* out) {
  FillSeriesFromRow(row["series_id"].as<int64_t>(), row["canonical_key"].as<std::string>(),
                    row["measure_name"].as<std::string>(), row["dimensions"].as<std::string>(),
                    out);
}

// A time parameter $n as a timestamptz. Callers pass times through Clamp first, so that the
// product stays inside PostgreSQL's interval and timestamp ranges.
std::string Ts(int n) {
  return absl::StrCat("('epoch'::timestamptz + interval '1 microsecond' * $", n, "::bigint)");
}
// A size parameter $n (microseconds) as an interval.
std::string Size(int n) { return absl::StrCat("(interval '1 microsecond' * $", n, "::bigint)"); }
// A timestamptz expression as microseconds since the epoch.
std::string Micros(const std::string& expr) {
  return absl::StrCat("(EXTRACT(EPOCH FROM ", expr, ") * 1000000)::bigint");
}
// What a series' description (Series: id, key, measure, dimensions) adds to a response, about:
// a page counts it against the response byte bound with the first row of the series.
constexpr const char* kSeriesBytes =
    "(octet_length(s.canonical_key) + octet_length(s.measure_name) +"
    " octet_length(s.dimensions::text) + 24)::bigint";

// From year -4370 to year 146,000: everything a timestamptz can hold that matters here.
int64_t Clamp(int64_t t) {
  return std::clamp<int64_t>(t, -200'000'000'000'000'000, int64_t{1} << 62);
}

// Fills the series of `by_id` from the series table, one query for the page.
void FetchSeries(pqxx::transaction_base& tx, const std::map<int64_t, v1::Series*>& by_id) {
  if (by_id.empty()) return;
  std::vector<int64_t> ids;
  for (const auto& [id, series] : by_id) ids.push_back(id);
  for (const pqxx::row& row : tx.exec_params(
           "SELECT series_id, canonical_key, measure_name, dimensions::text AS dimensions"
           " FROM series WHERE series_id = ANY($1::bigint[])",
           absl::StrCat("{", absl::StrJoin(ids, ","), "}"))) {
    FillSeries(row, by_id.at(row[0].as<int64_t>()));
  }
}

// Rows an Interpolate call fetches at a time (about 2 MB as libpq text).
constexpr int64_t kObservationChunk = 20'000;
// Rows a Rollup call fetches at a time: a grouped row carries its group key (up to 8
// dimensions of 2 KiB as JSON), so at most about 8 MiB; typical rows make some 100 KB.
constexpr int64_t kBucketChunk = 500;

// What is left until `deadline`, in whole milliseconds, at least 1 (a statement_timeout of 0
// would mean none).
int64_t RemainingMs(absl::Time deadline) {
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now()));
}

// A page's rows, read a chunk of the selected series at a time from `from` (the cursor's
// series) on: the first chunk of `first_chunk` series, each next one twice as large, until
// `limit` rows are read or the series run out. `read(ids, limit)` reads the rows of the
// series `ids` (a bigint[] literal, every one selected) names, in page order (by series, then
// time), at most `limit` of them. Reading every selected series at once made each page read
// and sort every row after the cursor, so paging through N series cost about N times the
// rows. The ids, those the selector names included, are fetched from the series table
// through the selector's filter ahead of the chunks: the first fetch eight times the first
// chunk, each next one eight times the last (up to 10,000). A selection that PostgreSQL
// finds through an index on dimensions is found whole by each fetch (and sorted), so fetching
// each chunk's ids apart cost one such search per chunk. Each statement after the first
// (whose timeout the caller set) runs within what is left until `deadline`. A page's
// statements read their own snapshots (READ COMMITTED), but no series is split between two
// of them.
template <typename Read>
std::vector<pqxx::row> ReadInChunks(pqxx::transaction_base& tx, const v1::SeriesSelector& selector,
                                    int64_t from, int64_t first_chunk, int64_t limit,
                                    absl::Time deadline, Read read) {
  // At most this many ids go into one statement (as many as a selector may name by default).
  constexpr int64_t kMaxChunk = 10'000;
  const SelectorParams p = ToParams(selector);
  bool first_statement = true;
  auto within_deadline = [&] {
    if (!first_statement) {
      tx.exec0(absl::StrCat("SET LOCAL statement_timeout = ", RemainingMs(deadline)));
    }
    first_statement = false;
  };
  // Selected ids not read yet, in order from `next`; `more` while the series table may hold
  // further ones from `fetch_from` on.
  std::vector<int64_t> ids;
  size_t next = 0;
  bool more = true;
  int64_t fetch_from = from;
  int64_t chunk = std::clamp<int64_t>(first_chunk, 1, kMaxChunk);
  int64_t fetch = std::min(chunk * 8, kMaxChunk);
  std::vector<pqxx::row> rows;
  while (static_cast<int64_t>(rows.size()) < limit) {
    if (more && static_cast<int64_t>(ids.size() - next) < chunk) {
      ids.erase(ids.begin(), ids.begin() + next);
      next = 0;
      // One id more than the fetch says whether another fetch follows.
      within_deadline();
      const pqxx::result fetched =
          tx.exec_params(absl::StrCat("SELECT s.series_id FROM series s WHERE ", kSeriesFilter,
                                      " AND s.series_id >= $6 ORDER BY s.series_id LIMIT $7"),
                         p.measure_name, p.equal_json, p.not_equal_json, p.regex_json, p.series_ids,
                         fetch_from, fetch + 1);
      more = static_cast<int64_t>(fetched.size()) > fetch;
      for (int i = 0; i < static_cast<int>(fetched.size()) && i < fetch; ++i) {
        ids.push_back(fetched[i][0].as<int64_t>());
      }
      if (more) fetch_from = ids.back() + 1;  // below INT64_MAX: a larger id was fetched
      fetch = std::min(fetch * 8, kMaxChunk);
    }
    if (next == ids.size()) break;
    const size_t end = std::min(ids.size(), next + static_cast<size_t>(chunk));
    const std::string selected =
        absl::StrCat("{", absl::StrJoin(ids.begin() + next, ids.begin() + end, ","), "}");
    next = end;
    within_deadline();
    for (const pqxx::row& row : read(selected, limit - static_cast<int64_t>(rows.size()))) {
      rows.push_back(row);
    }
    chunk = std::min(chunk * 2, kMaxChunk);
  }
  return rows;
}

// FetchSeries under a statement timeout of what is left until `deadline` (the last SET LOCAL
// was for an earlier statement).
void DescribeSeries(pqxx::transaction_base& tx, const std::map<int64_t, v1::Series*>& by_id,
                    absl::Time deadline) {
  if (by_id.empty()) return;
  tx.exec0(absl::StrCat("SET LOCAL statement_timeout = ", RemainingMs(deadline)));
  FetchSeries(tx, by_id);
}

// The rows of an open cursor, read `chunk` at a time, each FETCH within what is left until
// `deadline`: a call holds one chunk as libpq text, not every row it reads.
class CursorRows {
 public:
  CursorRows(pqxx::transaction_base& tx, std::string cursor, int64_t chunk, absl::Time deadline)
      : tx_(tx), cursor_(std::move(cursor)), chunk_(chunk), deadline_(deadline) {}

  // Whether a row is left, fetching the next chunk when needed.
  bool Left() {
    if (row_ == rows_.size() && !fetched_all_) {
      rows_ = tx_.exec(absl::StrCat("SET LOCAL statement_timeout = ", RemainingMs(deadline_),
                                    "; FETCH ", chunk_, " FROM ", cursor_));
      row_ = 0;
      fetched_all_ = static_cast<int64_t>(rows_.size()) < chunk_;
    }
    return row_ < rows_.size();
  }
  // The row Left() found; valid until the next Left().
  pqxx::row Current() const { return rows_[row_]; }
  void Advance() { ++row_; }
  // The rows not read yet, counted without sending them.
  int64_t CountRest() {
    const int64_t in_chunk = static_cast<int64_t>(rows_.size() - row_);
    row_ = rows_.size();
    if (fetched_all_) return in_chunk;
    fetched_all_ = true;
    return in_chunk +
           static_cast<int64_t>(
               tx_.exec(absl::StrCat("SET LOCAL statement_timeout = ", RemainingMs(deadline_),
                                     "; MOVE FORWARD ALL IN ", cursor_))
                   .affected_rows());
  }

 private:
  pqxx::transaction_base& tx_;
  const std::string cursor_;
  const int64_t chunk_;
  const absl::Time deadline_;
  pqxx::result rows_;
  size_t row_ = 0;
  bool fetched_all_ = false;
};

// The numeric value of a point, or NULL.
constexpr const char* kNumericValue = "coalesce(p.value_double, p.value_int::double precision)";

void SetTimeout(pqxx::transaction_base& tx, absl::Duration timeout) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout));
  // Rollups sort tens of thousands of windows; more memory keeps that sort off disk. No JIT:
  // PostgreSQL compiles a statement estimated costly enough on every run, which took the
  // day's Rollup of 100 series from 31 ms to 168 ms, and no read here gained from it
  // (docs/query.md).
  tx.exec0(absl::StrCat("SET LOCAL statement_timeout = ", ms,
                        "; SET LOCAL work_mem = '32MB'; SET LOCAL jit = off"));
}

absl::Status Convert(const std::exception& e) {
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
      sql && sql->sqlstate() == "57014") {
    return absl::DeadlineExceededError("the query ran past the call's deadline");
  }
  return pg::FromException(e);
}

}  // namespace

absl::Duration CallTimeout(absl::Duration remaining, absl::Duration default_timeout,
                           absl::Duration max_timeout) {
  absl::Duration timeout = remaining > absl::Hours(24) ? default_timeout : remaining;
  return std::min(timeout, max_timeout);
}

void FillSeriesFromRow(int64_t series_id, const std::string& canonical_key,
                       const std::string& measure_name, const std::string& dimensions_json,
                       v1::Series* out) {
  out->set_series_id(series_id);
  out->set_canonical_key(canonical_key);
  out->set_measure_name(measure_name);
  const nlohmann::json dims = nlohmann::json::parse(dimensions_json);
  for (const auto& [k, v] : dims.items()) (*out->mutable_dimensions())[k] = v.get<std::string>();
}

QueryStore::QueryStore(std::string dsn, QueryLimits limits)
    : dsn_(std::move(dsn)), limits_(limits) {}

absl::Status QueryStore::EnsureConnected() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(dsn_);
  if (!c.ok()) return c.status();
  conn_ = *std::move(c);
  return absl::OkStatus();
}

absl::StatusOr<v1::ListSeriesResponse> QueryStore::ListSeries(const v1::ListSeriesRequest& req,
                                                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = ValidateSelector(req.selector(), limits_); !s.ok()) return s;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_series_page, limits_.max_series_page);
  if (!page.ok()) return page.status();
  absl::StatusOr<Cursor> start = StartCursor(req.page_token());
  if (!start.ok()) return start.status();
  const Cursor cursor = *start;
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  const SelectorParams p = ToParams(req.selector());
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, deadline - absl::Now());  // a reconnection took some of it
    // Sizes first, descriptions of the series the page holds after: a page of long
    // descriptions ends at its byte bound without reading the rest of them.
    const pqxx::result rows = tx.exec_params(
        absl::StrCat("SELECT s.series_id, ", kSeriesBytes, " FROM series s WHERE ", kSeriesFilter,
                     " AND s.series_id > $6::bigint ORDER BY s.series_id LIMIT $7"),
        p.measure_name, p.equal_json, p.not_equal_json, p.regex_json, p.series_ids,
        cursor.series_id, *page + 1);
    v1::ListSeriesResponse resp;
    std::map<int64_t, v1::Series*> by_id;
    int64_t bytes = 0;
    bool more = static_cast<int>(rows.size()) > *page;
    for (int i = 0; i < static_cast<int>(rows.size()) && i < *page; ++i) {
      if (bytes > limits_.max_response_bytes) {
        more = true;
        break;
      }
      by_id[rows[i][0].as<int64_t>()] = resp.add_series();
      bytes += rows[i][1].as<int64_t>() + 4;
    }
    DescribeSeries(tx, by_id, deadline);
    if (more) {
      resp.set_next_page_token(
          EncodeCursor({resp.series(resp.series_size() - 1).series_id(), INT64_MIN, -1}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<v1::ReadPointsResponse> QueryStore::ReadPoints(const v1::ReadPointsRequest& req,
                                                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = ValidateSelector(req.selector(), limits_); !s.ok()) return s;
  if (absl::Status s = ValidateRange(req.range()); !s.ok()) return s;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_points_page, limits_.max_points_page);
  if (!page.ok()) return page.status();
  absl::StatusOr<Cursor> start = StartCursor(req.page_token(), req.limit());
  if (!start.ok()) return start.status();
  Cursor cursor = *start;
  int64_t want = *page;
  if (cursor.remaining >= 0) want = std::min<int64_t>(want, cursor.remaining);
  v1::ReadPointsResponse resp;
  if (want == 0) return resp;
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // INT64_MAX (or an unset end) stays "no end"; every other time is clamped, as elsewhere:
  // an unclamped INT64_MIN start wraps around in PostgreSQL's interval arithmetic and
  // matches nothing.
  const int64_t end_us = req.range().end_us() == 0 || req.range().end_us() == INT64_MAX
                             ? INT64_MAX
                             : Clamp(req.range().end_us());
  const int64_t start_us = Clamp(req.range().start_us());
  const int64_t cursor_time_us = cursor.time_us == INT64_MIN ? INT64_MIN : Clamp(cursor.time_us);
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, deadline - absl::Now());  // a reconnection took some of it
    // Row-value comparison resumes exactly after the last point of the previous page. How
    // dense a series is is not known: chunks start at one series. The points are found by the
    // chunk's ids alone (each id already selected), and the series table is read only for
    // the series that have some: in a chunk of thousands of series of which few have points
    // in the range, looking every one up first cost more than finding the points. The join
    // comes after the LIMIT, so it must not drop a row (the chunk's rows past the LIMIT would
    // be skipped): a point whose series row is gone (deleted by hand) keeps its place.
    const std::string sql = absl::StrCat(
        "SELECT r.series_id, (EXTRACT(EPOCH FROM r.time) * 1000000)::bigint AS time_us,"
        " r.value_double, r.value_int, r.value_bool, r.value_string, r.version,"
        " coalesce(",
        kSeriesBytes,
        ", 0) AS series_bytes FROM (SELECT p.series_id, p.time, p.value_double, p.value_int,"
        " p.value_bool, p.value_string, p.version FROM points p"
        " WHERE p.series_id = ANY($1::bigint[])"
        " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $2::bigint"
        " AND ($3::bigint = 9223372036854775807"
        "      OR p.time < 'epoch'::timestamptz + interval '1 microsecond' * $3::bigint)"
        " AND (p.series_id, p.time) > ($4::bigint, CASE WHEN $5::bigint = "
        "(-9223372036854775807 - 1)"
        "      THEN '-infinity'::timestamptz"
        "      ELSE 'epoch'::timestamptz + interval '1 microsecond' * $5::bigint END)"
        " ORDER BY p.series_id, p.time LIMIT $6) r LEFT JOIN series s USING (series_id)"
        " ORDER BY r.series_id, r.time");
    // A later page starts in the series the previous one ended in, mostly read already.
    const int64_t resumed = cursor.series_id == INT64_MIN ? 0 : 1;
    const std::vector<pqxx::row> rows =
        ReadInChunks(tx, req.selector(), cursor.series_id, 1 + resumed, want + 1, deadline,
                     [&](const std::string& ids, int64_t limit) {
                       return tx.exec_params(sql, ids, start_us, end_us, cursor.series_id,
                                             cursor_time_us, limit);
                     });
    std::map<int64_t, v1::SeriesPoints*> by_series;
    std::vector<int64_t> ids;
    int64_t last_series = 0, last_time = 0;
    int64_t n = std::min<int64_t>(want, rows.size());
    bool more = static_cast<int64_t>(rows.size()) > want;
    int64_t bytes = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (bytes > limits_.max_response_bytes) {
        n = i;
        more = true;
        break;
      }
      const pqxx::row& row = rows[static_cast<size_t>(i)];
      const int64_t sid = row[0].as<int64_t>();
      v1::SeriesPoints*& sp = by_series[sid];
      if (sp == nullptr) {
        sp = resp.add_series();
        sp->mutable_series()->set_series_id(sid);
        ids.push_back(sid);
        bytes += row[7].as<int64_t>();
      }
      v1::Point* point = sp->add_points();
      point->set_time_us(row[1].as<int64_t>());
      point->set_version(row[6].as<int64_t>());
      if (!row[2].is_null()) point->mutable_value()->set_double_value(row[2].as<double>());
      if (!row[3].is_null()) point->mutable_value()->set_int64_value(row[3].as<int64_t>());
      if (!row[4].is_null()) point->mutable_value()->set_bool_value(row[4].as<bool>());
      if (!row[5].is_null()) point->mutable_value()->set_string_value(row[5].as<std::string>());
      bytes += static_cast<int64_t>(point->ByteSizeLong()) + 4;
      last_series = sid;
      last_time = point->time_us();
    }
    if (!ids.empty()) {
      tx.exec0(absl::StrCat("SET LOCAL statement_timeout = ", RemainingMs(deadline)));
      for (const pqxx::row& row : tx.exec_params(
               "SELECT series_id, canonical_key, measure_name, dimensions::text AS dimensions"
               " FROM series WHERE series_id = ANY($1::bigint[])",
               absl::StrCat("{", absl::StrJoin(ids, ","), "}"))) {
        FillSeries(row, by_series[row[0].as<int64_t>()]->mutable_series());
      }
    }
    const int64_t remaining = cursor.remaining < 0 ? -1 : cursor.remaining - n;
    if (more && remaining != 0) {
      resp.set_next_page_token(EncodeCursor({last_series, last_time, remaining, ""}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<std::vector<int64_t>> QueryStore::StoredWindowSizes(absl::Duration timeout) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, timeout);
    std::vector<int64_t> sizes;
    for (const pqxx::row& row :
         tx.exec("SELECT (EXTRACT(EPOCH FROM window_size) * 1000000)::bigint FROM window_sizes"
                 " ORDER BY 1")) {
      sizes.push_back(row[0].as<int64_t>());
    }
    return sizes;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<v1::ReadAggregatesResponse> QueryStore::ReadAggregates(
    const v1::ReadAggregatesRequest& req, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = ValidateSelector(req.selector(), limits_); !s.ok()) return s;
  if (absl::Status s = ValidateRange(req.range()); !s.ok()) return s;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_points_page, limits_.max_points_page);
  if (!page.ok()) return page.status();
  absl::StatusOr<Cursor> start = StartCursor(req.page_token(), req.limit());
  if (!start.ok()) return start.status();
  Cursor cursor = *start;
  absl::StatusOr<std::vector<int64_t>> sizes = StoredWindowSizes(deadline - absl::Now());
  if (!sizes.ok()) return sizes.status();
  if (absl::Status s = RequireStoredSize(req.window_size_us(), *sizes, "window_size_us"); !s.ok()) {
    return s;
  }
  v1::ReadAggregatesResponse resp;
  resp.set_window_size_us(req.window_size_us());
  int64_t want = *page;
  if (cursor.remaining >= 0) want = std::min<int64_t>(want, cursor.remaining);
  if (want == 0) return resp;
  const int64_t size = req.window_size_us();
  // Windows whose start is in the range; the raw points of live windows lie in [lo, hi).
  const int64_t lo = Clamp(AlignUp(req.range().start_us(), size));
  const int64_t hi =
      Clamp(req.range().end_us() == 0 ? INT64_MAX : AlignUp(req.range().end_us(), size));
  // Each chunk's ids are selected already; the statement's filter finds them by id.
  const SelectorParams p = ToParams(req.selector());
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, deadline - absl::Now());
    // Stored windows, then (real_time) each series' windows after its last stored one,
    // computed as the aggregator computes them: sums in time order, first and last by time.
    const std::string after_cursor =
        absl::StrCat("(series_id, window_start) > ($10::bigint, ", Ts(11), ")");
    // A series has at most `per_series` windows in the range: the first chunk is as many series
    // as fill a page when each has them all.
    const int64_t per_series = std::max<int64_t>(1, (hi - lo) / size);
    const std::string sql = absl::StrCat(
        // A series' kind ends its canonical key (series::CanonicalKey): numeric ones, the
        // only ones with windows, end in '}', bool and string ones in "}:bool" and
        // "}:string". Live windows skip those, whose raw points would be read whole.
        "WITH sel AS MATERIALIZED (SELECT s.series_id, ", kSeriesBytes,
        " AS series_bytes, s.canonical_key NOT LIKE '%}:bool'"
        " AND s.canonical_key NOT LIKE '%}:string' AS numeric FROM series s WHERE ",
        kSeriesFilter, "),",
        " stored AS (SELECT a.series_id, a.window_start, a.count, a.sum, a.min, a.max,"
        "   a.avg, a.first, a.last, a.version, false AS partial, sel.series_bytes"
        "   FROM aggregates a JOIN sel USING (series_id)"
        "   WHERE a.window_size = ",
        Size(6), " AND a.window_start >= ", Ts(7), "   AND a.window_start < ", Ts(8),
        "   AND (a.series_id, a.window_start) > ($10::bigint, ", Ts(11), ")),",
        " live AS (SELECT p.series_id, date_bin(", Size(6),
        ", p.time, 'epoch') AS window_start,"
        "   count(*) AS count, sum(x.v ORDER BY p.time) AS sum, min(x.v) AS min,"
        "   max(x.v) AS max, sum(x.v ORDER BY p.time) / count(*) AS avg,"
        "   (array_agg(x.v ORDER BY p.time))[1] AS first,"
        "   (array_agg(x.v ORDER BY p.time DESC))[1] AS last,"
        "   0::bigint AS version, true AS partial, sel.series_bytes"
        "   FROM sel CROSS JOIN LATERAL (SELECT max(a.window_start) AS last_start"
        "     FROM aggregates a WHERE a.series_id = sel.series_id AND a.window_size = ",
        Size(6), "     AND a.window_start >= ", Ts(7), " - ", Size(6), "     AND a.window_start < ",
        Ts(8), ") l", "   JOIN points p ON p.series_id = sel.series_id",
        "     AND p.time >= greatest(", Ts(7), ", l.last_start + ", Size(6), ")",
        "     AND p.time < ", Ts(8), "   CROSS JOIN LATERAL (SELECT ", kNumericValue, " AS v) x",
        // Only the series from the cursor's on: a later page does not recompute the
        // live windows of the series earlier pages returned.
        "   WHERE $9::boolean AND sel.numeric AND sel.series_id >= $10::bigint"
        "     AND x.v IS NOT NULL"
        "   GROUP BY 1, 2, sel.series_bytes)",
        // Each row carries its series' size: joining the union to sel again let the
        // planner, which expects one selected series, rerun the union once per series.
        " SELECT series_id, ", Micros("window_start"),
        ", count, sum, min, max, avg, first, last, version, partial, series_bytes FROM (",
        " SELECT * FROM stored UNION ALL SELECT * FROM live WHERE ", after_cursor,
        ") u ORDER BY series_id, window_start LIMIT $12");
    // A later page starts in the series the previous one ended in, mostly read already.
    const int64_t resumed = cursor.series_id == INT64_MIN ? 0 : 1;
    const std::vector<pqxx::row> rows = ReadInChunks(
        tx, req.selector(), cursor.series_id, (want + per_series) / per_series + resumed, want + 1,
        deadline, [&](const std::string& ids, int64_t limit) {
          return tx.exec_params(sql, p.measure_name, p.equal_json, p.not_equal_json, p.regex_json,
                                ids, size, lo, hi, req.real_time(), cursor.series_id,
                                Clamp(cursor.time_us), limit);
        });
    std::map<int64_t, v1::Series*> series;
    v1::SeriesWindows* current = nullptr;
    int64_t n = 0, bytes = 0, last_series = 0, last_time = 0;
    bool more = static_cast<int64_t>(rows.size()) > want;
    for (const pqxx::row& row : rows) {
      if (n == want) break;
      if (bytes > limits_.max_response_bytes) {
        more = true;
        break;
      }
      const int64_t sid = row[0].as<int64_t>();
      if (current == nullptr || current->series().series_id() != sid) {
        current = resp.add_series();
        current->mutable_series()->set_series_id(sid);
        series[sid] = current->mutable_series();
        bytes += row[11].as<int64_t>();
      }
      v1::AggregateWindow* w = current->add_windows();
      w->set_start_us(row[1].as<int64_t>());
      v1::AggregateValue* v = w->mutable_value();
      v->set_count(row[2].as<int64_t>());
      v->set_sum(row[3].as<double>());
      v->set_min(row[4].as<double>());
      v->set_max(row[5].as<double>());
      v->set_avg(row[6].as<double>());
      v->set_first(row[7].as<double>());
      v->set_last(row[8].as<double>());
      w->set_version(row[9].as<int64_t>());
      w->set_partial(row[10].as<bool>());
      bytes += static_cast<int64_t>(w->ByteSizeLong()) + 4;
      last_series = sid;
      last_time = w->start_us();
      ++n;
    }
    DescribeSeries(tx, series, deadline);
    const int64_t remaining = cursor.remaining < 0 ? -1 : cursor.remaining - n;
    if (more && remaining != 0) {
      resp.set_next_page_token(EncodeCursor({last_series, last_time, remaining, ""}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<v1::RollupResponse> QueryStore::Rollup(const v1::RollupRequest& req,
                                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = ValidateRollup(req, limits_); !s.ok()) return s;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_points_page, limits_.max_points_page);
  if (!page.ok()) return page.status();
  absl::StatusOr<Cursor> start = StartCursor(req.page_token());
  if (!start.ok()) return start.status();
  const Cursor cursor = *start;
  absl::StatusOr<std::vector<int64_t>> sizes = StoredWindowSizes(deadline - absl::Now());
  if (!sizes.ok()) return sizes.status();
  absl::StatusOr<int64_t> source =
      ChooseSourceWindow(req.bucket_us(), req.source_window_size_us(), *sizes);
  if (!source.ok()) return source.status();
  const bool grouped = req.group_by_size() > 0;
  const int64_t bucket = req.bucket_us();
  const int64_t lo = Clamp(AlignUp(req.range().start_us(), bucket));
  const int64_t hi =
      Clamp(req.range().end_us() == 0 ? INT64_MAX : AlignUp(req.range().end_us(), bucket));
  const nlohmann::json group_by(
      std::vector<std::string>(req.group_by().begin(), req.group_by().end()));
  const SelectorParams p = ToParams(req.selector());
  v1::RollupResponse resp;
  resp.set_source_window_size_us(*source);
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, deadline - absl::Now());  // the window sizes' read took some of it
    // A grouped Rollup answers a group per dimension value, whatever the fleet's size. One
    // without group_by answers a group per series, and each of its pages merges the windows
    // of every selected series from its cursor on: it keeps the cap on named series.
    const int64_t most_series = grouped ? limits_.max_rollup_series : limits_.max_series;
    const pqxx::row covered =
        tx.exec_params1(absl::StrCat("SELECT count(*) FROM (SELECT 1 FROM series s WHERE ",
                                     kSeriesFilter, " LIMIT $6) x"),
                        p.measure_name, p.equal_json, p.not_equal_json, p.regex_json, p.series_ids,
                        std::min<int64_t>(most_series, INT64_MAX - 1) + 1);
    if (covered[0].as<int64_t>() > most_series) {
      return absl::InvalidArgumentError(
          absl::StrCat("the selector covers more than ", most_series, " series, the most a Rollup ",
                       grouped ? "with group_by may merge (the query service's --max_rollup_series)"
                               : "without group_by may return",
                       "; narrow it with a measure_name or dimension matchers"));
    }
    // Rows are (gk, gid, bucket, ...): a group is the group_by values as a JSON array with
    // gid 0, or '' and the series id. Buckets merge windows count-weighted; first and last
    // follow (window_start, series_id) order.
    const std::string merged =
        " sum(a.count)::bigint, sum(a.sum), min(a.min), max(a.max),"
        " (array_agg(a.first ORDER BY a.window_start, a.series_id))[1],"
        " (array_agg(a.last ORDER BY a.window_start DESC, a.series_id DESC))[1], count(*)";
    const std::string windows_in_range =
        absl::StrCat("a.window_size = ", Size(7), " AND a.window_start >= ", Ts(9),
                     " AND a.window_start < ", Ts(10));
    const std::string bucket_of = absl::StrCat("date_bin(", Size(8), ", a.window_start, 'epoch')");
    // A group's first and last windows are found by their (start, series) keys with plain
    // min and max, and their values read back once the page's buckets are chosen: ordered
    // aggregates held and sorted every window of a bucket, all the fleet's in a fleet-wide
    // one, and took longer (docs/query.md).
    const std::string window_key =
        absl::StrCat("ARRAY[", Micros("a.window_start"), ", a.series_id]");
    const auto window_value = [](const std::string& column, const std::string& key) {
      return absl::StrCat("(SELECT w.", column, " FROM aggregates w WHERE w.series_id = ", key,
                          "[2] AND w.window_size = ", Size(7),
                          " AND w.window_start = 'epoch'::timestamptz + interval '1 microsecond'"
                          " * ",
                          key, "[1])");
    };
    // Windows start at multiples of their size since the epoch (the writer refuses any other,
    // REJECT_REASON_INVALID_AGGREGATE), so a bucket as wide as the windows holds at most one
    // window of each series: its windows are its series. Without DISTINCT, PostgreSQL hashes
    // the windows into their groups instead of sorting them all.
    const std::string series_in_bucket =
        bucket == *source ? "count(*)" : "count(DISTINCT a.series_id)";
    const std::string sql =
        grouped
            ? absl::StrCat(
                  "WITH sel AS MATERIALIZED (SELECT s.series_id, (SELECT jsonb_agg(coalesce("
                  "s.dimensions->>u.n, '') ORDER BY u.i) FROM jsonb_array_elements_text("
                  "$6::jsonb) WITH ORDINALITY AS u(n, i))::text COLLATE \"C\" AS gk"
                  " FROM series s WHERE ",
                  kSeriesFilter, " AND $12::bigint IS NOT NULL),", " g AS (SELECT sel.gk, ",
                  bucket_of,
                  " AS bucket, sum(a.count)::bigint AS count, sum(a.sum) AS sum, min(a.min) AS min,"
                  " max(a.max) AS max, min(",
                  window_key, ") AS first_key, max(", window_key,
                  ") AS last_key, count(*) AS windows, ", series_in_bucket,
                  " AS series"
                  " FROM aggregates a JOIN sel USING (series_id) WHERE ",
                  windows_in_range, " AND (sel.gk, ", bucket_of, ") > ($11::text COLLATE \"C\", ",
                  Ts(13), ") GROUP BY sel.gk, ", bucket_of, " ORDER BY 1, 2 LIMIT $14)",
                  " SELECT g.gk, 0::bigint, ", Micros("g.bucket"),
                  ", g.count, g.sum, g.min, g.max, ", window_value("first", "g.first_key"), ", ",
                  window_value("last", "g.last_key"),
                  ", g.windows, g.series, 0::bigint FROM g ORDER BY g.gk, g.bucket")
            // One series per group: each series' windows are read in index order and merged
            // on their own (many small sorts instead of one large one), twice as fast.
            : absl::StrCat("WITH sel AS MATERIALIZED (SELECT s.series_id, ", kSeriesBytes,
                           " AS series_bytes FROM series s WHERE ", kSeriesFilter,
                           " AND s.series_id >= $12::bigint",
                           " AND $6::jsonb IS NOT NULL AND $11::text IS NOT NULL)",
                           " SELECT '', sel.series_id, b.*, sel.series_bytes"
                           " FROM sel CROSS JOIN LATERAL (SELECT ",
                           Micros(bucket_of), " AS bucket_us,", merged, ", 1::bigint",
                           " FROM aggregates a WHERE a.series_id = sel.series_id AND ",
                           windows_in_range, " GROUP BY ", bucket_of, ") b",
                           " WHERE (sel.series_id, b.bucket_us) > ($12::bigint, $13::bigint)",
                           " ORDER BY sel.series_id, b.bucket_us LIMIT $14");
    // Read through a cursor, a chunk at a time, up to the page's byte bound: grouped rows
    // carry their group key, so the page's rows read whole could hold far more than the page.
    // Planned to be read whole, as the query was before it had a cursor.
    tx.exec0("SET LOCAL cursor_tuple_fraction = 1");
    tx.exec_params0(absl::StrCat("DECLARE buckets NO SCROLL CURSOR FOR ", sql), p.measure_name,
                    p.equal_json, p.not_equal_json, p.regex_json, p.series_ids, group_by.dump(),
                    *source, bucket, lo, hi, cursor.key, cursor.series_id, Clamp(cursor.time_us),
                    *page + 1);
    CursorRows rows(tx, "buckets", kBucketChunk, deadline);
    std::map<int64_t, v1::Series*> series;
    v1::RollupGroup* current = nullptr;
    std::string current_key;
    int64_t current_id = 0, n = 0, bytes = 0;
    bool more = false;
    Cursor last;
    for (; rows.Left(); rows.Advance()) {
      if (n == *page || bytes > limits_.max_response_bytes) {
        more = true;
        break;
      }
      const pqxx::row row = rows.Current();
      const std::string gk = row[0].as<std::string>();
      const int64_t gid = row[1].as<int64_t>();
      if (current == nullptr || gk != current_key || gid != current_id) {
        current = resp.add_groups();
        current_key = gk;
        current_id = gid;
        if (grouped) {
          const nlohmann::json values = nlohmann::json::parse(gk);
          for (int i = 0; i < req.group_by_size(); ++i) {
            (*current->mutable_group())[req.group_by(i)] = values.at(i).get<std::string>();
          }
          bytes += static_cast<int64_t>(current->ByteSizeLong());
        } else {
          current->mutable_series()->set_series_id(gid);
          series[gid] = current->mutable_series();
          bytes += row[11].as<int64_t>();
        }
      }
      v1::RollupBucket* b = current->add_buckets();
      b->set_start_us(row[2].as<int64_t>());
      v1::AggregateValue* v = b->mutable_value();
      v->set_count(row[3].as<int64_t>());
      v->set_sum(row[4].as<double>());
      v->set_min(row[5].as<double>());
      v->set_max(row[6].as<double>());
      v->set_avg(v->sum() / static_cast<double>(v->count()));
      v->set_first(row[7].as<double>());
      v->set_last(row[8].as<double>());
      b->set_windows(row[9].as<int64_t>());
      b->set_series_count(row[10].as<int64_t>());
      bytes += static_cast<int64_t>(b->ByteSizeLong()) + 4;
      last = {gid, b->start_us(), -1, gk};
      ++n;
    }
    DescribeSeries(tx, series, deadline);
    if (more) resp.set_next_page_token(EncodeCursor(last));
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<v1::InterpolateResponse> QueryStore::Interpolate(const v1::InterpolateRequest& req,
                                                                absl::Duration timeout) {
  if (absl::Status s = ValidateInterpolate(req, limits_); !s.ok()) return s;
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_series_page, limits_.max_series_page);
  if (!page.ok()) return page.status();
  absl::StatusOr<Cursor> start = StartCursor(req.page_token());
  if (!start.ok()) return start.status();
  const Cursor cursor = *start;
  const bool from_aggregates = req.window_size_us() > 0;
  if (from_aggregates) {
    absl::StatusOr<std::vector<int64_t>> sizes = StoredWindowSizes(deadline - absl::Now());
    if (!sizes.ok()) return sizes.status();
    if (absl::Status s = RequireStoredSize(req.window_size_us(), *sizes, "window_size_us");
        !s.ok()) {
      return s;
    }
  } else if (absl::Status s = EnsureConnected(); !s.ok()) {
    return s;
  }
  const SelectorParams p = ToParams(req.selector());
  v1::InterpolateResponse resp;
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, deadline - absl::Now());
    // The series' descriptions are read for the series the page returns, once it is cut.
    const pqxx::result series_rows = tx.exec_params(
        absl::StrCat("SELECT s.series_id, ", kSeriesBytes, " FROM series s WHERE ", kSeriesFilter,
                     " AND s.series_id > $6::bigint ORDER BY s.series_id LIMIT $7"),
        p.measure_name, p.equal_json, p.not_equal_json, p.regex_json, p.series_ids,
        cursor.series_id, *page + 1);
    const int n = std::min<int>(*page, static_cast<int>(series_rows.size()));
    if (n == 0) return resp;
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back(series_rows[i][0].as<int64_t>());
    // Observations in the range, and the nearest one on each side of it (LOCF looks back at
    // most max_lookback_us, when it is set).
    const std::string table = from_aggregates ? "aggregates" : "points";
    const std::string time = from_aggregates ? "o.window_start" : "o.time";
    const std::string value =
        from_aggregates ? absl::StrCat("o.", FieldColumn(req.field()), "::double precision")
                        : "coalesce(o.value_double, o.value_int::double precision)";
    const std::string where =
        from_aggregates ? absl::StrCat("o.window_size = ", Size(3)) : "$3::bigint = 0";
    const int64_t lookback_from =
        req.method() == v1::INTERPOLATION_METHOD_LOCF && req.max_lookback_us() > 0
            ? Clamp(req.range().start_us() < INT64_MIN + req.max_lookback_us()
                        ? INT64_MIN  // the subtraction would overflow
                        : req.range().start_us() - req.max_lookback_us())
            : Clamp(INT64_MIN);
    auto side = [&](const std::string& cond, const char* order) {
      return absl::StrCat("SELECT ids.series_id, b.t, b.v FROM ids CROSS JOIN LATERAL (SELECT ",
                          time, " AS t, ", value, " AS v FROM ", table,
                          " o WHERE o.series_id = ids.series_id AND ", where, " AND ", value,
                          " IS NOT NULL AND ", cond, " ORDER BY ", time, " ", order, " LIMIT 1) b");
    };
    // Read through a cursor, a chunk at a time, series by series: the call holds one series'
    // observations and one chunk, not the whole page's rows as libpq text.
    // Planned to be read whole, as the query was before it had a cursor (a cursor's plan
    // otherwise favours its first rows).
    tx.exec0("SET LOCAL cursor_tuple_fraction = 1");
    tx.exec_params0(
        absl::StrCat("DECLARE observations NO SCROLL CURSOR FOR"
                     " WITH ids AS (SELECT unnest($1::bigint[]) AS series_id)"
                     " SELECT series_id, ",
                     Micros("t"), ", v FROM (",
                     // Limited on its own too, so that a range past the cap stops the scan
                     // there rather than reading and sorting all of it first.
                     " (SELECT o.series_id, ", time, " AS t, ", value, " AS v FROM ", table,
                     " o JOIN ids USING (series_id) WHERE ", where, " AND ", value,
                     " IS NOT NULL AND ", time, " >= ", Ts(4), " AND ", time, " < ", Ts(5),
                     " LIMIT $2) UNION ALL ",
                     side(absl::StrCat(time, " < ", Ts(4), " AND ", time, " >= ", Ts(6)), "DESC"),
                     " UNION ALL ", side(absl::StrCat(time, " >= ", Ts(5)), "ASC"),
                     ") x ORDER BY series_id, t LIMIT $2"),
        absl::StrCat("{", absl::StrJoin(ids, ","), "}"), limits_.max_observations + 1,
        req.window_size_us(), Clamp(req.range().start_us()), Clamp(req.range().end_us()),
        lookback_from);
    CursorRows observations_read(tx, "observations", kObservationChunk, deadline);
    int64_t read = 0;
    const absl::Status too_many = absl::InvalidArgumentError(absl::StrCat(
        "the page reads more than ", limits_.max_observations,
        " observations; use a smaller page_size, a shorter range or an aggregate source"));
    std::map<int64_t, v1::Series*> by_id;
    int64_t bytes = 0;
    int64_t last_series = INT64_MIN;
    for (int i = 0; i < n; ++i) {
      const pqxx::row& s = series_rows[i];
      const int64_t sid = s[0].as<int64_t>();
      std::vector<Observation> observations;
      for (; observations_read.Left(); observations_read.Advance()) {
        const pqxx::row o = observations_read.Current();
        if (o[0].as<int64_t>() != sid) break;
        if (++read > limits_.max_observations) return too_many;
        observations.push_back({o[1].as<int64_t>(), o[2].as<double>()});
      }
      last_series = sid;
      std::vector<v1::InterpolatedValue> values = InterpolateSteps(observations, req);
      if (values.empty()) continue;
      v1::InterpolatedSeries* out = resp.add_series();
      by_id[sid] = out->mutable_series();
      for (v1::InterpolatedValue& v : values) *out->add_values() = std::move(v);
      bytes += static_cast<int64_t>(out->ByteSizeLong()) + s[1].as<int64_t>();
      if (bytes > limits_.max_response_bytes && i + 1 < n) {
        // The observations in the range were cut at the cap in no particular order: past it,
        // the series above may have been interpolated from some of theirs only. Counted
        // without sending the rest.
        if (read + observations_read.CountRest() > limits_.max_observations) return too_many;
        DescribeSeries(tx, by_id, deadline);
        resp.set_next_page_token(EncodeCursor({sid, INT64_MIN, -1, ""}));
        return resp;
      }
    }
    DescribeSeries(tx, by_id, deadline);
    if (static_cast<int>(series_rows.size()) > *page) {
      resp.set_next_page_token(EncodeCursor({last_series, INT64_MIN, -1, ""}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

}  // namespace tidemark::query
