#include "services/query/query_core.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace tidemark::query {
namespace {

constexpr int64_t kMicrosPerSecond = 1'000'000;

bool IsRegex(v1::DimensionMatcher::Op op) {
  return op == v1::DimensionMatcher::OP_REGEX || op == v1::DimensionMatcher::OP_NOT_REGEX;
}

// Both RE2 and PostgreSQL take (?:...) and anchors, so the whole value must match.
std::string Anchored(const std::string& pattern) { return absl::StrCat("^(?:", pattern, ")$"); }

absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileMatcher(const v1::DimensionMatcher& m) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  // PostgreSQL's `~` lets `.` match a newline (dimension values may hold one): so must RE2,
  // or a subscription would miss series that the reads select.
  options.set_dot_nl(true);
  // The pattern on its own too: "a)|(?:b" is valid only once wrapped, where it would match
  // values starting with a or ending with b instead of whole values.
  const re2::RE2 alone(m.value(), options);
  auto re = std::make_shared<const re2::RE2>(Anchored(m.value()), options);
  if (!alone.ok() || !re->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the regular expression of matcher ", m.name(),
                     m.op() == v1::DimensionMatcher::OP_REGEX ? "=~" : "!~", "\"", m.value(),
                     "\" is not valid: ", alone.ok() ? re->error() : alone.error()));
  }
  return re;
}

std::string SizesText(const std::vector<int64_t>& sizes) {
  if (sizes.empty()) return "none yet: no aggregate has been stored";
  std::vector<std::string> names;
  for (int64_t s : sizes) names.push_back(FormatSize(s));
  return absl::StrJoin(names, ", ");
}

}  // namespace

std::string EncodeCursor(const Cursor& c) {
  std::string text = absl::StrCat("v1:", c.series_id, ":", c.time_us, ":", c.remaining);
  if (!c.key.empty()) absl::StrAppend(&text, ":", absl::WebSafeBase64Escape(c.key));
  return absl::WebSafeBase64Escape(text);
}

absl::StatusOr<Cursor> DecodeCursor(const std::string& token) {
  const auto invalid = absl::InvalidArgumentError(
      "page_token is not valid: pass the next_page_token of the previous response unchanged");
  std::string text;
  if (!absl::WebSafeBase64Unescape(token, &text)) return invalid;
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  Cursor c;
  if (parts.size() < 4 || parts.size() > 5 || parts[0] != "v1" ||
      !absl::SimpleAtoi(parts[1], &c.series_id) || !absl::SimpleAtoi(parts[2], &c.time_us) ||
      !absl::SimpleAtoi(parts[3], &c.remaining)) {
    return invalid;
  }
  if (parts.size() == 5 && !absl::WebSafeBase64Unescape(parts[4], &c.key)) return invalid;
  return c;
}

absl::StatusOr<Cursor> StartCursor(const std::string& page_token, int64_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("limit must not be negative");
  if (!page_token.empty()) return DecodeCursor(page_token);
  Cursor cursor;
  cursor.remaining = limit > 0 ? limit : -1;
  return cursor;
}

std::string EncodeResumeToken(int64_t change_id) {
  return absl::WebSafeBase64Escape(absl::StrCat("s1:", change_id));
}

absl::StatusOr<int64_t> DecodeResumeToken(const std::string& token) {
  std::string decoded;
  int64_t id = 0;
  absl::string_view text;
  if (absl::WebSafeBase64Unescape(token, &decoded)) text = decoded;
  if (!absl::ConsumePrefix(&text, "s1:") || !absl::SimpleAtoi(text, &id) || id < 0) {
    return absl::InvalidArgumentError(
        "resume_token is not valid: pass the resume_token of a SubscribeResponse unchanged");
  }
  return id;
}

absl::StatusOr<int> PageSize(int requested, int default_size, int max_size) {
  if (requested < 0) return absl::InvalidArgumentError("page_size must not be negative");
  if (requested > max_size) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", requested,
                                                   " is above the maximum of ", max_size,
                                                   "; page through with page_token instead"));
  }
  if (requested == 0) return default_size;
  return requested;
}

absl::Status ValidateSelector(const v1::SeriesSelector& selector, const QueryLimits& limits) {
  return SeriesMatcher::Compile(selector, limits).status();
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
  nlohmann::json regex = nlohmann::json::array();
  for (const v1::DimensionMatcher& m : selector.matchers()) {
    switch (m.op()) {
      case v1::DimensionMatcher::OP_NOT_EQUAL:
        not_equal.push_back({{m.name(), m.value()}});
        break;
      case v1::DimensionMatcher::OP_REGEX:
      case v1::DimensionMatcher::OP_NOT_REGEX:
        regex.push_back({{"name", m.name()},
                         {"pattern", Anchored(m.value())},
                         {"negate", m.op() == v1::DimensionMatcher::OP_NOT_REGEX}});
        break;
      default:
        equal[m.name()] = m.value();
    }
  }
  return {selector.measure_name(), equal.dump(), not_equal.dump(), regex.dump(),
          absl::StrCat("{", absl::StrJoin(selector.series_ids(), ","), "}")};
}

absl::StatusOr<SeriesMatcher> SeriesMatcher::Compile(const v1::SeriesSelector& selector,
                                                     const QueryLimits& limits) {
  if (selector.matchers_size() > limits.max_matchers) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_matchers, " dimension matchers per selector"));
  }
  // Subscribe matches every change against the ids on the hub's one thread, and reads send
  // them to PostgreSQL as one array: as many as a selector may cover anyway.
  if (selector.series_ids_size() > limits.max_series) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", limits.max_series,
                                                   " series_ids per selector (got ",
                                                   selector.series_ids_size(), ")"));
  }
  SeriesMatcher matcher;
  matcher.selector_ = selector;
  matcher.series_ids_.insert(selector.series_ids().begin(), selector.series_ids().end());
  for (const v1::DimensionMatcher& m : selector.matchers()) {
    if (m.name().empty()) return absl::InvalidArgumentError("a dimension matcher has no name");
    if (!v1::DimensionMatcher::Op_IsValid(m.op())) {
      return absl::InvalidArgumentError(
          absl::StrCat("matcher ", m.name(), " has an unknown op ", static_cast<int>(m.op())));
    }
    if (m.op() == v1::DimensionMatcher::OP_EQUAL) {
      // Equal matchers become one JSON object in SQL: a name given twice would keep one.
      for (const v1::DimensionMatcher& other : selector.matchers()) {
        if (&other != &m && other.op() == v1::DimensionMatcher::OP_EQUAL &&
            other.name() == m.name()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "dimension ", m.name(), " has two = matchers; a series has one value for it"));
        }
      }
    }
    if (!IsRegex(m.op())) {
      matcher.regexes_.push_back(nullptr);
      continue;
    }
    absl::StatusOr<std::shared_ptr<const re2::RE2>> re = CompileMatcher(m);
    if (!re.ok()) return re.status();
    matcher.regexes_.push_back(*std::move(re));
  }
  return matcher;
}

bool SeriesMatcher::Matches(const v1::Series& series) const {
  if (!selector_.measure_name().empty() && series.measure_name() != selector_.measure_name()) {
    return false;
  }
  if (!series_ids_.empty() && !series_ids_.contains(series.series_id())) return false;
  for (int i = 0; i < selector_.matchers_size(); ++i) {
    const v1::DimensionMatcher& m = selector_.matchers(i);
    const auto it = series.dimensions().find(m.name());
    const bool present = it != series.dimensions().end();
    const std::string& value = present ? it->second : "";
    switch (m.op()) {
      case v1::DimensionMatcher::OP_EQUAL:
        if (!present || value != m.value()) return false;
        break;
      case v1::DimensionMatcher::OP_NOT_EQUAL:
        if (present && value == m.value()) return false;
        break;
      case v1::DimensionMatcher::OP_REGEX:
        if (!re2::RE2::FullMatch(value, *regexes_[i])) return false;
        break;
      case v1::DimensionMatcher::OP_NOT_REGEX:
        if (re2::RE2::FullMatch(value, *regexes_[i])) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

int64_t AlignDown(int64_t t, int64_t step) {
  const int64_t r = t % step;
  if (r == 0) return t;
  return r > 0 ? t - r : (t - r < INT64_MIN + step ? INT64_MIN : t - r - step);
}

int64_t AlignUp(int64_t t, int64_t step) {
  const int64_t r = t % step;
  if (r == 0) return t;
  // Before the epoch the ceiling is truncation toward zero, always representable (from the
  // floor, which saturates near INT64_MIN, it was not a multiple of the step).
  if (r < 0) return t - r;
  return t > INT64_MAX - (step - r) ? INT64_MAX : t + (step - r);
}

std::string FormatSize(int64_t us) {
  constexpr int64_t kDay = 86'400 * kMicrosPerSecond;
  if (us > 0 && us % kDay == 0) return absl::StrCat(us / kDay, "d");
  return absl::FormatDuration(absl::Microseconds(us));
}

absl::Status RequireStoredSize(int64_t size_us, const std::vector<int64_t>& stored_sizes,
                               const std::string& what) {
  if (size_us <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is required; stored window sizes: ", SizesText(stored_sizes)));
  }
  if (std::find(stored_sizes.begin(), stored_sizes.end(), size_us) == stored_sizes.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no aggregates are stored for ", what, " ", FormatSize(size_us),
                     "; stored window sizes: ", SizesText(stored_sizes)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ChooseSourceWindow(int64_t bucket_us, int64_t requested,
                                           const std::vector<int64_t>& stored_sizes) {
  if (requested != 0) {
    if (absl::Status s = RequireStoredSize(requested, stored_sizes, "source_window_size_us");
        !s.ok()) {
      return s;
    }
    if (bucket_us % requested != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bucket ", FormatSize(bucket_us), " is not a multiple of the source window ",
                       FormatSize(requested), "; choose a bucket that is (e.g. ",
                       FormatSize(requested * 12), ") or leave source_window_size_us 0"));
    }
    return requested;
  }
  int64_t best = 0;
  for (int64_t s : stored_sizes) {
    if (s > 0 && bucket_us % s == 0) best = std::max(best, s);
  }
  if (best == 0) {
    std::vector<std::string> examples;
    for (int64_t s : stored_sizes) {
      const int64_t up = AlignUp(bucket_us, s);
      examples.push_back(up == bucket_us ? FormatSize(s) : FormatSize(up));
    }
    std::sort(examples.begin(), examples.end());
    examples.erase(std::unique(examples.begin(), examples.end()), examples.end());
    return absl::InvalidArgumentError(absl::StrCat(
        "bucket ", FormatSize(bucket_us), " is not a multiple of any stored window size (",
        SizesText(stored_sizes), ")",
        stored_sizes.empty() ? ""
                             : absl::StrCat("; buckets that would work are multiples of one "
                                            "of them, e.g. ",
                                            absl::StrJoin(examples, ", "))));
  }
  return best;
}

absl::Status ValidateRollup(const v1::RollupRequest& req, const QueryLimits& limits) {
  if (absl::Status s = ValidateSelector(req.selector(), limits); !s.ok()) return s;
  if (absl::Status s = ValidateRange(req.range()); !s.ok()) return s;
  if (req.bucket_us() <= 0) {
    return absl::InvalidArgumentError("bucket_us must be positive, e.g. 3600000000 for 1h");
  }
  if (req.group_by_size() > limits.max_group_by) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_group_by, " group_by dimensions"));
  }
  std::set<std::string> seen;
  for (const std::string& name : req.group_by()) {
    if (name.empty()) return absl::InvalidArgumentError("a group_by dimension name is empty");
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("group_by names ", name, " twice"));
    }
  }
  return absl::OkStatus();
}

int64_t StepCount(const v1::InterpolateRequest& req) {
  if (req.step_us() <= 0) return 0;
  const int64_t first = AlignUp(req.range().start_us(), req.step_us());
  if (first >= req.range().end_us()) return 0;
  // In 128 bits: a range across the whole int64 span must not wrap into a small count.
  const __int128 span = static_cast<__int128>(req.range().end_us()) - 1 - first;
  const __int128 steps = span / req.step_us() + 1;
  return steps > INT64_MAX ? INT64_MAX : static_cast<int64_t>(steps);
}

absl::Status ValidateInterpolate(const v1::InterpolateRequest& req, const QueryLimits& limits) {
  if (absl::Status s = ValidateSelector(req.selector(), limits); !s.ok()) return s;
  // Only the end has an "unset" (0, unbounded); a start of 0 is 1970-01-01, and an unset one
  // is caught by the step limit below.
  if (req.range().end_us() == 0) {
    return absl::InvalidArgumentError("Interpolate needs range end_us (0 means unbounded)");
  }
  if (absl::Status s = ValidateRange(req.range()); !s.ok()) return s;
  if (req.step_us() <= 0) {
    return absl::InvalidArgumentError("step_us must be positive, e.g. 60000000 for 1m");
  }
  const int64_t steps = StepCount(req);
  if (steps > limits.max_steps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the range holds ", steps, " steps of ", FormatSize(req.step_us()), "; at most ",
        limits.max_steps, " per call: use a larger step or a shorter range"));
  }
  if (req.method() == v1::INTERPOLATION_METHOD_UNSPECIFIED ||
      !v1::InterpolationMethod_IsValid(req.method())) {
    return absl::InvalidArgumentError("method must be LINEAR, LOCF, CONSTANT or CUBIC_SPLINE");
  }
  if (req.max_lookback_us() < 0) {
    return absl::InvalidArgumentError("max_lookback_us must not be negative");
  }
  if (req.window_size_us() < 0) {
    return absl::InvalidArgumentError("window_size_us must not be negative");
  }
  if (req.window_size_us() > 0 && (req.field() == v1::AGGREGATE_FIELD_UNSPECIFIED ||
                                   !v1::AggregateField_IsValid(req.field()))) {
    return absl::InvalidArgumentError(
        "interpolating aggregates needs a field: AVG, MIN, MAX, SUM, COUNT, FIRST or LAST");
  }
  if (req.window_size_us() == 0 && req.field() != v1::AGGREGATE_FIELD_UNSPECIFIED) {
    return absl::InvalidArgumentError("field is set but window_size_us is 0 (raw points)");
  }
  if (!std::isfinite(req.fill_value())) {
    return absl::InvalidArgumentError("fill_value must be finite");
  }
  return absl::OkStatus();
}

const char* FieldColumn(v1::AggregateField field) {
  switch (field) {
    case v1::AGGREGATE_FIELD_MIN:
      return "min";
    case v1::AGGREGATE_FIELD_MAX:
      return "max";
    case v1::AGGREGATE_FIELD_SUM:
      return "sum";
    case v1::AGGREGATE_FIELD_COUNT:
      return "count";
    case v1::AGGREGATE_FIELD_FIRST:
      return "first";
    case v1::AGGREGATE_FIELD_LAST:
      return "last";
    default:
      return "avg";
  }
}

namespace {

// Second derivatives of the natural cubic spline through the points (x, y), by the
// tridiagonal (Thomas) algorithm; x strictly increasing, in seconds from the first point so
// that microsecond epochs do not cost precision.
std::vector<double> SplineSecondDerivatives(const std::vector<double>& x,
                                            const std::vector<double>& y) {
  const size_t n = x.size();
  std::vector<double> m(n, 0.0);
  if (n < 3) return m;
  std::vector<double> c(n, 0.0), d(n, 0.0);
  for (size_t i = 1; i + 1 < n; ++i) {
    const double h0 = x[i] - x[i - 1], h1 = x[i + 1] - x[i];
    const double a = h0, b = 2 * (h0 + h1), cc = h1;
    const double r = 6 * ((y[i + 1] - y[i]) / h1 - (y[i] - y[i - 1]) / h0);
    const double denom = b - a * c[i - 1];
    c[i] = cc / denom;
    d[i] = (r - a * d[i - 1]) / denom;
  }
  for (size_t i = n - 2; i >= 1; --i) {
    m[i] = d[i] - c[i] * m[i + 1];
    if (i == 1) break;
  }
  return m;
}

}  // namespace

std::vector<v1::InterpolatedValue> InterpolateSteps(const std::vector<Observation>& obs,
                                                    const v1::InterpolateRequest& req) {
  std::vector<v1::InterpolatedValue> out;
  const int64_t step = req.step_us();
  auto emit = [&out](int64_t t, double v) {
    v1::InterpolatedValue& value = out.emplace_back();
    value.set_time_us(t);
    value.set_value(v);
  };
  std::vector<double> xs, ys, second;
  if (req.method() == v1::INTERPOLATION_METHOD_CUBIC_SPLINE && !obs.empty()) {
    for (const Observation& o : obs) {
      xs.push_back(static_cast<double>(o.time_us - obs.front().time_us) / kMicrosPerSecond);
      ys.push_back(o.value);
    }
    second = SplineSecondDerivatives(xs, ys);
  }
  // `next` is the first observation after the step's time; both advance monotonically.
  size_t next = 0;
  const int64_t first = AlignUp(req.range().start_us(), step);
  const int64_t count = StepCount(req);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t t = first + i * step;  // below end_us, so no overflow
    while (next < obs.size() && obs[next].time_us <= t) ++next;
    const Observation* at_or_before = next > 0 ? &obs[next - 1] : nullptr;
    const Observation* after = next < obs.size() ? &obs[next] : nullptr;
    const bool exact = at_or_before != nullptr && at_or_before->time_us == t;
    switch (req.method()) {
      case v1::INTERPOLATION_METHOD_CONSTANT:
        emit(t, exact ? at_or_before->value : req.fill_value());
        break;
      case v1::INTERPOLATION_METHOD_LOCF:
        if (at_or_before != nullptr &&
            (req.max_lookback_us() == 0 || t - at_or_before->time_us <= req.max_lookback_us())) {
          emit(t, at_or_before->value);
        }
        break;
      case v1::INTERPOLATION_METHOD_LINEAR:
        if (exact) {
          emit(t, at_or_before->value);
        } else if (at_or_before != nullptr && after != nullptr) {
          const double f = static_cast<double>(t - at_or_before->time_us) /
                           static_cast<double>(after->time_us - at_or_before->time_us);
          emit(t, at_or_before->value + f * (after->value - at_or_before->value));
        }
        break;
      case v1::INTERPOLATION_METHOD_CUBIC_SPLINE:
        if (exact) {
          emit(t, at_or_before->value);
        } else if (at_or_before != nullptr && after != nullptr) {
          const size_t i = next - 1;
          const double x = static_cast<double>(t - obs.front().time_us) / kMicrosPerSecond;
          const double h = xs[i + 1] - xs[i];
          const double a = (xs[i + 1] - x) / h, b = (x - xs[i]) / h;
          emit(t,
               a * ys[i] + b * ys[i + 1] +
                   ((a * a * a - a) * second[i] + (b * b * b - b) * second[i + 1]) * h * h / 6.0);
        }
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace tidemark::query
