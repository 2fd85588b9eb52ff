#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "re2/re2.h"
#include "tidemark/v1/query.pb.h"

namespace tidemark::query {

/// Limits on one query call.
struct QueryLimits {
  int default_series_page = 100;
  int max_series_page = 1000;
  int default_points_page = 1000;
  int max_points_page = 10'000;
  int max_matchers = 32;
  /// Series a selector may name by id, and a Rollup without group_by may cover.
  int max_series = 10'000;
  /// Series a Rollup with group_by may cover. It merges the windows of every selected series
  /// in its range before it answers its first group, so this and the call's deadline bound
  /// one call's work; the default covers one measure of a fleet of a million devices.
  int64_t max_rollup_series = 1'000'000;
  /// Steps of one series in one Interpolate call.
  int64_t max_steps = 10'000;
  /// Observations one Interpolate page may read.
  int64_t max_observations = 2'000'000;
  /// A page ends before its encoded size passes this (gRPC's default receive limit is 4 MiB).
  int64_t max_response_bytes = 3 * 1024 * 1024;
  int max_group_by = 8;
};

/// Where a paginated listing resumes: after (key, series_id, time_us), with `remaining` rows
/// left of the caller's overall limit (-1: no limit). `key` is the group of a Rollup.
struct Cursor {
  int64_t series_id = INT64_MIN;
  int64_t time_us = INT64_MIN;
  int64_t remaining = -1;
  std::string key;
};

/// Opaque page tokens: web-safe base64 of a versioned text form.
std::string EncodeCursor(const Cursor& cursor);
/// INVALID_ARGUMENT when the token was not produced by EncodeCursor.
absl::StatusOr<Cursor> DecodeCursor(const std::string& token);

/// Where a page starts: the cursor in `page_token`, or for the first page one with `limit`
/// rows left in all (0: no limit). INVALID_ARGUMENT for a negative limit or a foreign token.
absl::StatusOr<Cursor> StartCursor(const std::string& page_token, int64_t limit = 0);

/// Subscribe resume tokens: the position in the change log after the last update delivered.
std::string EncodeResumeToken(int64_t change_id);
absl::StatusOr<int64_t> DecodeResumeToken(const std::string& token);

/// The page size to use for a requested one: the default for 0, INVALID_ARGUMENT if negative
/// or above the maximum.
absl::StatusOr<int> PageSize(int requested, int default_size, int max_size);

/// Checks a selector, compiling its regular expressions; INVALID_ARGUMENT names what is wrong.
absl::Status ValidateSelector(const v1::SeriesSelector& selector, const QueryLimits& limits);

/// Checks a time range; INVALID_ARGUMENT when end precedes start.
absl::Status ValidateRange(const v1::TimeRange& range);

/// Selector parameters in the form the SQL takes: equal matchers as one JSON object
/// (jsonb containment), not-equal matchers as a JSON array of objects, regular-expression
/// matchers as a JSON array of {name, pattern, negate} with anchored patterns, ids as an
/// array literal.
struct SelectorParams {
  std::string measure_name;
  std::string equal_json;
  std::string not_equal_json;
  std::string regex_json;
  std::string series_ids;
};
SelectorParams ToParams(const v1::SeriesSelector& selector);

/// A selector compiled for matching series in memory (subscriptions). Matches exactly what
/// the SQL filter of ToParams selects.
class SeriesMatcher {
 public:
  /// INVALID_ARGUMENT as ValidateSelector.
  static absl::StatusOr<SeriesMatcher> Compile(const v1::SeriesSelector& selector,
                                               const QueryLimits& limits);
  bool Matches(const v1::Series& series) const;

 private:
  v1::SeriesSelector selector_;
  absl::flat_hash_set<int64_t> series_ids_;
  std::vector<std::shared_ptr<const re2::RE2>> regexes_;  // one per matcher, null if not regex
};

/// Multiples of `step` since the epoch: the largest at or before t, the smallest at or after
/// t (saturating at the int64 range).
int64_t AlignDown(int64_t t, int64_t step);
int64_t AlignUp(int64_t t, int64_t step);

/// "5m", "1h30m", "1d": a window or bucket size for messages.
std::string FormatSize(int64_t us);

/// The stored window size a Rollup merges: `requested` if it is stored and divides the bucket,
/// otherwise (requested = 0) the largest stored size that divides it. INVALID_ARGUMENT names
/// the stored sizes and the buckets that would work.
absl::StatusOr<int64_t> ChooseSourceWindow(int64_t bucket_us, int64_t requested,
                                           const std::vector<int64_t>& stored_sizes);

/// INVALID_ARGUMENT unless `size_us` is one of the stored sizes (naming them).
absl::Status RequireStoredSize(int64_t size_us, const std::vector<int64_t>& stored_sizes,
                               const std::string& what);

absl::Status ValidateRollup(const v1::RollupRequest& req, const QueryLimits& limits);
absl::Status ValidateInterpolate(const v1::InterpolateRequest& req, const QueryLimits& limits);

/// The number of steps of an Interpolate request in its range (saturating).
int64_t StepCount(const v1::InterpolateRequest& req);

/// One observed value of a series.
struct Observation {
  int64_t time_us;
  double value;
};

/// The values at every multiple of `step_us` in [start_us, end_us) interpolated from
/// `observations` (sorted by time, distinct times) by the request's method, with the
/// range-end rules stated in query.proto.
std::vector<v1::InterpolatedValue> InterpolateSteps(const std::vector<Observation>& observations,
                                                    const v1::InterpolateRequest& req);

/// The `aggregates` column of a field (ValidateInterpolate has checked it).
const char* FieldColumn(v1::AggregateField field);

}  // namespace tidemark::query
