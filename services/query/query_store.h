#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pqxx/connection"
#include "services/query/query_core.h"
#include "tidemark/v1/query.pb.h"

namespace tidemark::query {

/// Reads series, points and aggregates with parameterised SQL over one read-only connection.
/// Not thread-safe: each worker owns one.
class QueryStore final {
 public:
  QueryStore(std::string dsn, QueryLimits limits);

  /// Each call runs in a read-only transaction limited to `timeout`.
  absl::StatusOr<v1::ListSeriesResponse> ListSeries(const v1::ListSeriesRequest& req,
                                                    absl::Duration timeout);
  absl::StatusOr<v1::ReadPointsResponse> ReadPoints(const v1::ReadPointsRequest& req,
                                                    absl::Duration timeout);
  absl::StatusOr<v1::ReadAggregatesResponse> ReadAggregates(const v1::ReadAggregatesRequest& req,
                                                            absl::Duration timeout);
  absl::StatusOr<v1::RollupResponse> Rollup(const v1::RollupRequest& req, absl::Duration timeout);
  absl::StatusOr<v1::InterpolateResponse> Interpolate(const v1::InterpolateRequest& req,
                                                      absl::Duration timeout);

 private:
  absl::Status EnsureConnected();
  /// The window sizes aggregates are stored for, in microseconds, ascending.
  absl::StatusOr<std::vector<int64_t>> StoredWindowSizes(absl::Duration timeout);

  std::string dsn_;
  QueryLimits limits_;
  std::unique_ptr<pqxx::connection> conn_;
};

/// The statement timeout of a call whose deadline is `remaining` away: `default_timeout` when
/// the client set none (gRPC reports one centuries away; anything beyond a day counts as none),
/// and never more than `max_timeout`, so that no client deadline becomes an unbounded (or a
/// day-long) statement timeout. Zero or less when the deadline has passed.
absl::Duration CallTimeout(absl::Duration remaining, absl::Duration default_timeout,
                           absl::Duration max_timeout);

/// Fills a Series from a row with series_id, canonical_key, measure_name and dimensions (text).
void FillSeriesFromRow(int64_t series_id, const std::string& canonical_key,
                       const std::string& measure_name, const std::string& dimensions_json,
                       v1::Series* out);

}  // namespace tidemark::query
