#include "services/query/query_store.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pg/pg.h"
#include "nlohmann/json.hpp"
#include "pqxx/pqxx"

namespace tidemark::query {
namespace {

// The series a selector covers; $1 measure ('' = any), $2 equal matchers (jsonb object),
// $3 not-equal matchers (jsonb array of objects), $4 series ids (bigint[], empty = any).
constexpr const char* kSeriesFilter =
    "($1 = '' OR s.measure_name = $1)"
    " AND s.dimensions @> $2::jsonb"
    " AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) ne"
    "                 WHERE s.dimensions @> ne)"
    " AND (cardinality($4::bigint[]) = 0 OR s.series_id = ANY($4::bigint[]))";

void FillSeries(const pqxx::row& row, v1::Series* out) {
  out->set_series_id(row["series_id"].as<int64_t>());
  out->set_canonical_key(row["canonical_key"].as<std::string>());
  out->set_measure_name(row["measure_name"].as<std::string>());
  const nlohmann::json dims = nlohmann::json::parse(row["dimensions"].as<std::string>());
  for (const auto& [k, v] : dims.items()) (*out->mutable_dimensions())[k] = v.get<std::string>();
}

void SetTimeout(pqxx::transaction_base& tx, absl::Duration timeout) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout));
  tx.exec0(absl::StrCat("SET LOCAL statement_timeout = ", ms));
}

absl::Status Convert(const std::exception& e) {
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
      sql && sql->sqlstate() == "57014") {
    return absl::DeadlineExceededError("the query ran past the call's deadline");
  }
  return pg::FromException(e);
}

}  // namespace

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
  if (absl::Status s = ValidateSelector(req.selector(), limits_); !s.ok()) return s;
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_series_page, limits_.max_series_page);
  if (!page.ok()) return page.status();
  Cursor cursor;
  if (!req.page_token().empty()) {
    absl::StatusOr<Cursor> c = DecodeCursor(req.page_token());
    if (!c.ok()) return c.status();
    cursor = *c;
  }
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  const SelectorParams p = ToParams(req.selector());
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, timeout);
    const pqxx::result rows = tx.exec_params(
        absl::StrCat("SELECT s.series_id, s.canonical_key, s.measure_name, s.dimensions::text"
                     " AS dimensions FROM series s WHERE ",
                     kSeriesFilter, " AND s.series_id > $5::bigint ORDER BY s.series_id LIMIT $6"),
        p.measure_name, p.equal_json, p.not_equal_json, p.series_ids, cursor.series_id, *page + 1);
    v1::ListSeriesResponse resp;
    for (int i = 0; i < static_cast<int>(rows.size()) && i < *page; ++i) {
      FillSeries(rows[i], resp.add_series());
    }
    if (static_cast<int>(rows.size()) > *page) {
      resp.set_next_page_token(EncodeCursor({resp.series(*page - 1).series_id(), INT64_MIN, -1}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

absl::StatusOr<v1::ReadPointsResponse> QueryStore::ReadPoints(const v1::ReadPointsRequest& req,
                                                              absl::Duration timeout) {
  if (absl::Status s = ValidateSelector(req.selector(), limits_); !s.ok()) return s;
  if (absl::Status s = ValidateRange(req.range()); !s.ok()) return s;
  if (req.limit() < 0) return absl::InvalidArgumentError("limit must not be negative");
  absl::StatusOr<int> page =
      PageSize(req.page_size(), limits_.default_points_page, limits_.max_points_page);
  if (!page.ok()) return page.status();
  Cursor cursor;
  cursor.remaining = req.limit() > 0 ? req.limit() : -1;
  if (!req.page_token().empty()) {
    absl::StatusOr<Cursor> c = DecodeCursor(req.page_token());
    if (!c.ok()) return c.status();
    cursor = *c;
  }
  int64_t want = *page;
  if (cursor.remaining >= 0) want = std::min<int64_t>(want, cursor.remaining);
  v1::ReadPointsResponse resp;
  if (want == 0) return resp;
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  const SelectorParams p = ToParams(req.selector());
  const int64_t end_us = req.range().end_us() == 0 ? INT64_MAX : req.range().end_us();
  try {
    pqxx::read_transaction tx(*conn_);
    SetTimeout(tx, timeout);
    // Row-value comparison resumes exactly after the last point of the previous page.
    const pqxx::result rows = tx.exec_params(
        absl::StrCat(
            "WITH sel AS (SELECT s.series_id FROM series s WHERE ", kSeriesFilter,
            ") SELECT p.series_id, (EXTRACT(EPOCH FROM p.time) * 1000000)::bigint AS time_us,"
            " p.value_double, p.value_int, p.value_bool, p.value_string, p.version"
            " FROM points p JOIN sel USING (series_id)"
            " WHERE p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $5::bigint"
            " AND ($6::bigint = 9223372036854775807"
            "      OR p.time < 'epoch'::timestamptz + interval '1 microsecond' * $6::bigint)"
            " AND (p.series_id, p.time) > ($7::bigint, CASE WHEN $8::bigint = "
            "(-9223372036854775807 - 1)"
            "      THEN '-infinity'::timestamptz"
            "      ELSE 'epoch'::timestamptz + interval '1 microsecond' * $8::bigint END)"
            " ORDER BY p.series_id, p.time LIMIT $9"),
        p.measure_name, p.equal_json, p.not_equal_json, p.series_ids, req.range().start_us(),
        end_us, cursor.series_id, cursor.time_us, want + 1);
    std::map<int64_t, v1::SeriesPoints*> by_series;
    std::vector<int64_t> ids;
    int64_t last_series = 0, last_time = 0;
    const int64_t n = std::min<int64_t>(want, rows.size());
    for (int64_t i = 0; i < n; ++i) {
      const pqxx::row& row = rows[static_cast<int>(i)];
      const int64_t sid = row[0].as<int64_t>();
      v1::SeriesPoints*& sp = by_series[sid];
      if (sp == nullptr) {
        sp = resp.add_series();
        sp->mutable_series()->set_series_id(sid);
        ids.push_back(sid);
      }
      v1::Point* point = sp->add_points();
      point->set_time_us(row[1].as<int64_t>());
      point->set_version(row[6].as<int64_t>());
      if (!row[2].is_null()) point->mutable_value()->set_double_value(row[2].as<double>());
      if (!row[3].is_null()) point->mutable_value()->set_int64_value(row[3].as<int64_t>());
      if (!row[4].is_null()) point->mutable_value()->set_bool_value(row[4].as<bool>());
      if (!row[5].is_null()) point->mutable_value()->set_string_value(row[5].as<std::string>());
      last_series = sid;
      last_time = point->time_us();
    }
    if (!ids.empty()) {
      for (const pqxx::row& row : tx.exec_params(
               "SELECT series_id, canonical_key, measure_name, dimensions::text AS dimensions"
               " FROM series WHERE series_id = ANY($1::bigint[])",
               absl::StrCat("{", absl::StrJoin(ids, ","), "}"))) {
        FillSeries(row, by_series[row[0].as<int64_t>()]->mutable_series());
      }
    }
    const int64_t remaining = cursor.remaining < 0 ? -1 : cursor.remaining - n;
    if (static_cast<int64_t>(rows.size()) > want && remaining != 0) {
      resp.set_next_page_token(EncodeCursor({last_series, last_time, remaining}));
    }
    return resp;
  } catch (const std::exception& e) {
    conn_.reset();
    return Convert(e);
  }
}

}  // namespace tidemark::query
