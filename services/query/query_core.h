#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tidemark/v1/query.pb.h"

namespace tidemark::query {

/// Limits on one query call.
struct QueryLimits {
  int default_series_page = 100;
  int max_series_page = 1000;
  int default_points_page = 1000;
  int max_points_page = 10'000;
  int max_matchers = 32;
};

/// Where a paginated listing resumes: after (series_id, time_us), with `remaining` points
/// left of the caller's overall limit (-1: no limit).
struct Cursor {
  int64_t series_id = INT64_MIN;
  int64_t time_us = INT64_MIN;
  int64_t remaining = -1;
};

/// Opaque page tokens: web-safe base64 of a versioned text form.
std::string EncodeCursor(const Cursor& cursor);
/// INVALID_ARGUMENT when the token was not produced by EncodeCursor.
absl::StatusOr<Cursor> DecodeCursor(const std::string& token);

/// The page size to use for a requested one, or INVALID_ARGUMENT if negative.
absl::StatusOr<int> PageSize(int requested, int default_size, int max_size);

/// Checks a selector; INVALID_ARGUMENT names what is wrong.
absl::Status ValidateSelector(const v1::SeriesSelector& selector, const QueryLimits& limits);

/// Checks a time range; INVALID_ARGUMENT when end precedes start.
absl::Status ValidateRange(const v1::TimeRange& range);

/// Selector parameters in the form the SQL takes: equal matchers as one JSON object
/// (jsonb containment), not-equal matchers as a JSON array of objects, ids as an array
/// literal.
struct SelectorParams {
  std::string measure_name;
  std::string equal_json;
  std::string not_equal_json;
  std::string series_ids;
};
SelectorParams ToParams(const v1::SeriesSelector& selector);

}  // namespace tidemark::query
