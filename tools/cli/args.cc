#include "tools/cli/args.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tidemark::cli {
namespace {

absl::Status NotADuration(absl::string_view flag, absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": \"", text, "\" is not a duration such as 90s, 15m, 2h or 7d"));
}

// absl::ParseDuration takes a sequence of number+unit components, so a day component is
// rewritten as hours and the rest handed over as it is.
absl::StatusOr<absl::Duration> ParseWithDays(absl::string_view flag, absl::string_view text) {
  absl::string_view rest = text;
  bool negative = false;
  if (!rest.empty() && (rest.front() == '-' || rest.front() == '+')) {
    negative = rest.front() == '-';
    rest.remove_prefix(1);
  }
  if (rest.empty()) return NotADuration(flag, text);
  absl::Duration total = absl::ZeroDuration();
  while (!rest.empty()) {
    const size_t unit_at = rest.find_first_not_of("0123456789.");
    if (unit_at == 0 || unit_at == absl::string_view::npos) return NotADuration(flag, text);
    size_t next_at = rest.find_first_of("0123456789.", unit_at);
    if (next_at == absl::string_view::npos) next_at = rest.size();
    const absl::string_view number = rest.substr(0, unit_at);
    const absl::string_view unit = rest.substr(unit_at, next_at - unit_at);
    absl::Duration part;
    if (unit == "d") {
      if (!absl::ParseDuration(absl::StrCat(number, "h"), &part)) return NotADuration(flag, text);
      part *= 24;
    } else if (!absl::ParseDuration(absl::StrCat(number, unit), &part)) {
      return NotADuration(flag, text);
    }
    total += part;
    rest.remove_prefix(next_at);
  }
  return negative ? -total : total;
}

// Splits at commas not written as `\,`, which become plain commas.
std::vector<std::string> SplitUnescapedCommas(absl::string_view text) {
  std::vector<std::string> pieces(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == ',') {
      pieces.back().push_back(',');
      ++i;
    } else if (text[i] == ',') {
      pieces.emplace_back();
    } else {
      pieces.back().push_back(text[i]);
    }
  }
  return pieces;
}

bool IsRegex(const v1::DimensionMatcher& m) {
  return m.op() == v1::DimensionMatcher::OP_REGEX || m.op() == v1::DimensionMatcher::OP_NOT_REGEX;
}

absl::Status NotAMatcher(absl::string_view piece) {
  return absl::InvalidArgumentError(absl::StrCat(
      "--where: \"", piece, "\" is not name=value, name!=value, name=~regex or name!~regex"));
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view flag, absl::string_view text) {
  absl::Duration d;
  if (text.find('d') == absl::string_view::npos) {
    if (!absl::ParseDuration(text, &d)) return NotADuration(flag, text);
    return d;
  }
  return ParseWithDays(flag, text);
}

absl::StatusOr<int64_t> ParsePositiveMicros(absl::string_view flag, absl::string_view text) {
  absl::StatusOr<absl::Duration> d = ParseDuration(flag, text);
  if (!d.ok()) return d.status();
  if (*d <= absl::ZeroDuration() || *d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", text, "\" must be a positive, finite duration"));
  }
  if (*d % absl::Microseconds(1) != absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", text, "\" must be a whole number of microseconds"));
  }
  return absl::ToInt64Microseconds(*d);
}

absl::StatusOr<std::vector<int64_t>> ParseMicrosList(absl::string_view flag,
                                                     absl::string_view text) {
  std::vector<int64_t> sizes;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    absl::StatusOr<int64_t> us = ParsePositiveMicros(flag, absl::StripAsciiWhitespace(item));
    if (!us.ok()) return us.status();
    sizes.push_back(*us);
  }
  return sizes;
}

absl::StatusOr<std::vector<v1::DimensionMatcher>> ParseMatchers(absl::string_view where) {
  std::vector<v1::DimensionMatcher> matchers;
  for (const std::string& piece : SplitUnescapedCommas(where)) {
    if (piece.empty()) continue;
    const size_t at = piece.find_first_of("=!");
    if (at == std::string::npos) {
      // A comma inside a regex, as in {1,3} or [,;].
      if (!matchers.empty() && IsRegex(matchers.back())) {
        absl::StrAppend(matchers.back().mutable_value(), ",", piece);
        continue;
      }
      return NotAMatcher(piece);
    }
    const char next = at + 1 < piece.size() ? piece[at + 1] : '\0';
    v1::DimensionMatcher m;
    size_t value_at = at + 2;
    if (piece[at] == '!' && next == '=') {
      m.set_op(v1::DimensionMatcher::OP_NOT_EQUAL);
    } else if (piece[at] == '!' && next == '~') {
      m.set_op(v1::DimensionMatcher::OP_NOT_REGEX);
    } else if (piece[at] == '=' && next == '~') {
      m.set_op(v1::DimensionMatcher::OP_REGEX);
    } else if (piece[at] == '=') {
      m.set_op(v1::DimensionMatcher::OP_EQUAL);
      value_at = at + 1;
    } else {
      return NotAMatcher(piece);
    }
    const absl::string_view name =
        absl::StripAsciiWhitespace(absl::string_view(piece).substr(0, at));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--where: \"", piece, "\" has no dimension name before its operator"));
    }
    m.set_name(std::string(name));
    m.set_value(piece.substr(value_at));
    matchers.push_back(std::move(m));
  }
  // Spaces around a value are a way of writing the list (`site = north, rack = 7`), as
  // around a name, not part of what it matches; a regex keeps the spaces inside it.
  for (v1::DimensionMatcher& m : matchers) {
    m.set_value(std::string(absl::StripAsciiWhitespace(m.value())));
  }
  return matchers;
}

absl::StatusOr<v1::InterpolationMethod> ParseMethod(absl::string_view text) {
  if (text == "linear") return v1::INTERPOLATION_METHOD_LINEAR;
  if (text == "locf") return v1::INTERPOLATION_METHOD_LOCF;
  if (text == "constant") return v1::INTERPOLATION_METHOD_CONSTANT;
  if (text == "spline") return v1::INTERPOLATION_METHOD_CUBIC_SPLINE;
  return absl::InvalidArgumentError(
      absl::StrCat("--method: \"", text, "\" is not one of linear, locf, constant, spline"));
}

absl::StatusOr<v1::AggregateField> ParseField(absl::string_view text) {
  if (text == "avg") return v1::AGGREGATE_FIELD_AVG;
  if (text == "min") return v1::AGGREGATE_FIELD_MIN;
  if (text == "max") return v1::AGGREGATE_FIELD_MAX;
  if (text == "sum") return v1::AGGREGATE_FIELD_SUM;
  if (text == "count") return v1::AGGREGATE_FIELD_COUNT;
  if (text == "first") return v1::AGGREGATE_FIELD_FIRST;
  if (text == "last") return v1::AGGREGATE_FIELD_LAST;
  return absl::InvalidArgumentError(
      absl::StrCat("--field: \"", text, "\" is not one of avg, min, max, sum, count, first, last"));
}

absl::StatusOr<v1::TimeRange> ResolveRange(const RangeArgs& args, absl::Time now) {
  absl::Time end = now;
  absl::Time start;
  std::string err;
  if (!args.end.empty() && !absl::ParseTime(absl::RFC3339_full, args.end, &end, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--end: \"", args.end, "\" is not RFC 3339 (2024-05-01T10:00:00Z): ", err));
  }
  if (!args.start.empty() && !args.since.empty()) {
    return absl::InvalidArgumentError(
        "--start and --since both set where the range starts: give one of them");
  }
  if (!args.start.empty()) {
    if (!absl::ParseTime(absl::RFC3339_full, args.start, &start, &err)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--start: \"", args.start, "\" is not RFC 3339 (2024-05-01T10:00:00Z): ", err));
    }
  } else {
    const std::string since_text = args.since.empty() ? "1h" : args.since;
    absl::StatusOr<absl::Duration> since = ParseDuration("since", since_text);
    if (!since.ok()) return since.status();
    if (*since < absl::ZeroDuration() || *since == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--since: \"", since_text, "\" must be a finite duration, 0 or more"));
    }
    start = end - *since;
  }
  if (start > end) {
    return absl::InvalidArgumentError(absl::StrCat("the range starts (", absl::FormatTime(start),
                                                   ") after it ends (", absl::FormatTime(end),
                                                   ")"));
  }
  v1::TimeRange range;
  range.set_start_us(absl::ToUnixMicros(start));
  range.set_end_us(absl::ToUnixMicros(end) + 1);
  return range;
}

int64_t AlignDown(int64_t us, int64_t unit) {
  const int64_t remainder = us % unit;
  return remainder < 0 ? us - remainder - unit : us - remainder;
}

}  // namespace tidemark::cli
