#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pqxx/connection"
#include "services/query/query_core.h"
#include "tidemark/v1/query.pb.h"

namespace tidemark::query {

/// Reads series and points with parameterised SQL over one read-only connection.
/// Not thread-safe: each worker owns one.
class QueryStore final {
 public:
  QueryStore(std::string dsn, QueryLimits limits);

  /// Each call runs in a read-only transaction limited to `timeout`.
  absl::StatusOr<v1::ListSeriesResponse> ListSeries(const v1::ListSeriesRequest& req,
                                                    absl::Duration timeout);
  absl::StatusOr<v1::ReadPointsResponse> ReadPoints(const v1::ReadPointsRequest& req,
                                                    absl::Duration timeout);

 private:
  absl::Status EnsureConnected();

  std::string dsn_;
  QueryLimits limits_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace tidemark::query
