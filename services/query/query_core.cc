#include "services/query/query_core.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace tidemark::query {

std::string EncodeCursor(const Cursor& c) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("v1:", c.series_id, ":", c.time_us, ":", c.remaining));
}

absl::StatusOr<Cursor> DecodeCursor(const std::string& token) {
  const auto invalid = absl::InvalidArgumentError(
      "page_token is not valid: pass the next_page_token of the previous response unchanged");
  std::string text;
  if (!absl::WebSafeBase64Unescape(token, &text)) return invalid;
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  Cursor c;
  if (parts.size() != 4 || parts[0] != "v1" || !absl::SimpleAtoi(parts[1], &c.series_id) ||
      !absl::SimpleAtoi(parts[2], &c.time_us) || !absl::SimpleAtoi(parts[3], &c.remaining)) {
    return invalid;
  }
  return c;
}

absl::StatusOr<int> PageSize(int requested, int default_size, int max_size) {
  if (requested < 0) return absl::InvalidArgumentError("page_size must not be negative");
  if (requested == 0) return default_size;
  return std::min(requested, max_size);
}

absl::Status ValidateSelector(const v1::SeriesSelector& selector, const QueryLimits& limits) {
  if (selector.matchers_size() > limits.max_matchers) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_matchers, " dimension matchers per selector"));
  }
  for (const v1::DimensionMatcher& m : selector.matchers()) {
    if (m.name().empty()) return absl::InvalidArgumentError("a dimension matcher has no name");
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(const v1::TimeRange& range) {
  if (range.end_us() != 0 && range.end_us() <= range.start_us()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "range end_us (", range.end_us(), ") must be after start_us (", range.start_us(), ")"));
  }
  return absl::OkStatus();
}

SelectorParams ToParams(const v1::SeriesSelector& selector) {
  nlohmann::json equal = nlohmann::json::object();
  nlohmann::json not_equal = nlohmann::json::array();
  for (const v1::DimensionMatcher& m : selector.matchers()) {
    if (m.op() == v1::DimensionMatcher::OP_NOT_EQUAL) {
      not_equal.push_back({{m.name(), m.value()}});
    } else {
      equal[m.name()] = m.value();
    }
  }
  return {selector.measure_name(), equal.dump(), not_equal.dump(),
          absl::StrCat("{", absl::StrJoin(selector.series_ids(), ","), "}")};
}

}  // namespace tidemark::query
