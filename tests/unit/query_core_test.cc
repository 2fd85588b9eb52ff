#include "services/query/query_core.h"

#include <map>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tidemark::query {
namespace {

TEST(Cursor, RoundTrips) {
  const Cursor c{-42, 1'700'000'000'000'000, 17};
  absl::StatusOr<Cursor> back = DecodeCursor(EncodeCursor(c));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->series_id, -42);
  EXPECT_EQ(back->time_us, 1'700'000'000'000'000);
  EXPECT_EQ(back->remaining, 17);
}

TEST(Cursor, ForeignTokensAreInvalidArgument) {
  EXPECT_EQ(DecodeCursor("garbage!").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeCursor("djE6MQ").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Cursor, CarriesAGroupKey) {
  const Cursor c{0, 3'600'000'000, -1, R"(["north:1","a=b"])"};
  absl::StatusOr<Cursor> back = DecodeCursor(EncodeCursor(c));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->key, c.key);
  EXPECT_EQ(back->time_us, c.time_us);
  EXPECT_FALSE(DecodeCursor(EncodeCursor(c) + "x").ok());
}

TEST(ResumeToken, RoundTripsAndRejectsForeignTokens) {
  EXPECT_EQ(*DecodeResumeToken(EncodeResumeToken(0)), 0);
  EXPECT_EQ(*DecodeResumeToken(EncodeResumeToken(123456789)), 123456789);
  EXPECT_EQ(DecodeResumeToken("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeResumeToken(EncodeCursor({})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeResumeToken("czE6LTE").status().code(),  // "s1:-1"
            absl::StatusCode::kInvalidArgument);
}

TEST(PageSize, DefaultsAndLimits) {
  EXPECT_EQ(*PageSize(0, 100, 1000), 100);
  EXPECT_EQ(*PageSize(1000, 100, 1000), 1000);
  const absl::Status huge = PageSize(5000, 100, 1000).status();
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(huge.message().find("1000"), absl::string_view::npos) << huge.message();
  EXPECT_FALSE(PageSize(-1, 100, 1000).ok());
}

TEST(Selector, ParamsSplitMatchers) {
  v1::SeriesSelector s;
  s.set_measure_name("temperature");
  auto* eq = s.add_matchers();
  eq->set_name("site");
  eq->set_value("north");
  auto* ne = s.add_matchers();
  ne->set_name("device_id");
  ne->set_value("d2");
  ne->set_op(v1::DimensionMatcher::OP_NOT_EQUAL);
  s.add_series_ids(5);
  s.add_series_ids(-6);
  const SelectorParams p = ToParams(s);
  EXPECT_EQ(p.equal_json, R"({"site":"north"})");
  EXPECT_EQ(p.not_equal_json, R"([{"device_id":"d2"}])");
  EXPECT_EQ(p.series_ids, "{5,-6}");
}

TEST(Selector, RejectsNamelessMatchersAndBadRanges) {
  v1::SeriesSelector s;
  s.add_matchers();
  EXPECT_EQ(ValidateSelector(s, {}).code(), absl::StatusCode::kInvalidArgument);
  v1::TimeRange r;
  r.set_start_us(10);
  r.set_end_us(5);
  EXPECT_EQ(ValidateRange(r).code(), absl::StatusCode::kInvalidArgument);
}

v1::DimensionMatcher Matcher(const std::string& name, v1::DimensionMatcher::Op op,
                             const std::string& value) {
  v1::DimensionMatcher m;
  m.set_name(name);
  m.set_op(op);
  m.set_value(value);
  return m;
}

v1::Series MakeSeries(int64_t id, const std::string& measure,
                      std::map<std::string, std::string> dims) {
  v1::Series s;
  s.set_series_id(id);
  s.set_measure_name(measure);
  for (auto& [k, v] : dims) (*s.mutable_dimensions())[k] = v;
  return s;
}

TEST(Selector, RegexMatchersBecomeAnchoredPatterns) {
  v1::SeriesSelector s;
  *s.add_matchers() = Matcher("device_id", v1::DimensionMatcher::OP_REGEX, "turbine-00[0-2].*");
  *s.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_NOT_REGEX, "north|south");
  EXPECT_EQ(ToParams(s).regex_json,
            R"([{"name":"device_id","negate":false,"pattern":"^(?:turbine-00[0-2].*)$"},)"
            R"({"name":"site","negate":true,"pattern":"^(?:north|south)$"}])");
  EXPECT_TRUE(ValidateSelector(s, {}).ok());
}

TEST(Selector, BadRegexIsInvalidArgumentNamingTheMatcher) {
  v1::SeriesSelector s;
  *s.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_REGEX, "(north");
  const absl::Status status = ValidateSelector(s, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("site=~"), absl::string_view::npos) << status.message();
}

// "a)|(?:b" is a valid pattern only once wrapped in ^(?:...)$, where it would match values
// that start with a or end with b rather than whole values.
TEST(Selector, APatternValidOnlyOnceWrappedIsRefused) {
  v1::SeriesSelector s;
  *s.add_matchers() = Matcher("env", v1::DimensionMatcher::OP_REGEX, "prod)|(?:dev");
  EXPECT_EQ(ValidateSelector(s, {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Selector, MoreSeriesIdsThanASelectorMayCoverAreRefused) {
  v1::SeriesSelector s;
  QueryLimits limits;
  limits.max_series = 3;
  for (int i = 0; i < 3; ++i) s.add_series_ids(i);
  EXPECT_TRUE(ValidateSelector(s, limits).ok());
  s.add_series_ids(3);
  const absl::Status status = ValidateSelector(s, limits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("series_ids"), absl::string_view::npos) << status.message();
}

TEST(Selector, TooManyMatchersAreRefused) {
  v1::SeriesSelector s;
  QueryLimits limits;
  limits.max_matchers = 2;
  for (int i = 0; i < 3; ++i) *s.add_matchers() = Matcher("a", v1::DimensionMatcher::OP_EQUAL, "b");
  EXPECT_EQ(ValidateSelector(s, limits).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SeriesMatcher, MatchesWhatTheSqlFilterSelects) {
  v1::SeriesSelector s;
  s.set_measure_name("speed");
  *s.add_matchers() = Matcher("device_id", v1::DimensionMatcher::OP_REGEX, "turbine-000[1-3]");
  *s.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_NOT_EQUAL, "south");
  *s.add_matchers() = Matcher("rack", v1::DimensionMatcher::OP_NOT_REGEX, "r9.*");
  absl::StatusOr<SeriesMatcher> m = SeriesMatcher::Compile(s, {});
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-0002"}})));
  EXPECT_TRUE(m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-0003"}, {"rack", "r1"}})));
  // Anchored: a prefix match is not a match.
  EXPECT_FALSE(m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-00012"}})));
  EXPECT_FALSE(m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-0004"}})));
  EXPECT_FALSE(m->Matches(MakeSeries(1, "temp", {{"device_id", "turbine-0001"}})));
  EXPECT_FALSE(
      m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-0001"}, {"site", "south"}})));
  EXPECT_FALSE(m->Matches(MakeSeries(1, "speed", {{"device_id", "turbine-0001"}, {"rack", "r9"}})));

  v1::SeriesSelector ids;
  ids.add_series_ids(7);
  *ids.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_REGEX, "");
  absl::StatusOr<SeriesMatcher> by_id = SeriesMatcher::Compile(ids, {});
  ASSERT_TRUE(by_id.ok());
  // A missing dimension matches as the empty string.
  EXPECT_TRUE(by_id->Matches(MakeSeries(7, "x", {})));
  EXPECT_FALSE(by_id->Matches(MakeSeries(7, "x", {{"site", "a"}})));
  EXPECT_FALSE(by_id->Matches(MakeSeries(8, "x", {})));
}

// PostgreSQL's `~` lets `.` match a newline, so the subscriptions' matcher must too.
TEST(SeriesMatcher, DotMatchesANewlineAsInPostgreSql) {
  v1::SeriesSelector s;
  *s.add_matchers() = Matcher("loc", v1::DimensionMatcher::OP_REGEX, "bay.*");
  absl::StatusOr<SeriesMatcher> m = SeriesMatcher::Compile(s, {});
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->Matches(MakeSeries(1, "x", {{"loc", "bay 4\nrow 2"}})));
  v1::SeriesSelector negated;
  *negated.add_matchers() = Matcher("loc", v1::DimensionMatcher::OP_NOT_REGEX, "bay.*");
  absl::StatusOr<SeriesMatcher> n = SeriesMatcher::Compile(negated, {});
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->Matches(MakeSeries(1, "x", {{"loc", "bay 4\nrow 2"}})));
}

TEST(Align, BucketsAreMultiplesOfTheStepSinceTheEpoch) {
  constexpr int64_t kHour = 3'600'000'000;
  EXPECT_EQ(AlignDown(0, kHour), 0);
  EXPECT_EQ(AlignDown(kHour + 1, kHour), kHour);
  EXPECT_EQ(AlignUp(kHour + 1, kHour), 2 * kHour);
  EXPECT_EQ(AlignUp(2 * kHour, kHour), 2 * kHour);
  // Before the epoch, floor and ceiling, not truncation toward zero.
  EXPECT_EQ(AlignDown(-1, kHour), -kHour);
  EXPECT_EQ(AlignUp(-1, kHour), 0);
  EXPECT_EQ(AlignDown(-kHour, kHour), -kHour);
  // 2024-02-29T13:45:00Z: a leap day, in 1 d buckets.
  constexpr int64_t kDay = 24 * kHour;
  const int64_t t = absl::ToUnixMicros(absl::FromCivil(absl::CivilSecond(2024, 2, 29, 13, 45, 0),
                                                       absl::UTCTimeZone()));
  EXPECT_EQ(AlignDown(t, kDay), absl::ToUnixMicros(absl::FromCivil(
                                    absl::CivilDay(2024, 2, 29), absl::UTCTimeZone())));
  // Saturates instead of overflowing.
  EXPECT_EQ(AlignUp(INT64_MAX - 5, kHour), INT64_MAX);
  EXPECT_EQ(AlignDown(INT64_MIN + 5, kHour), INT64_MIN);
  // The ceiling near INT64_MIN is a multiple of the step, not the saturated floor plus one.
  EXPECT_EQ(AlignUp(INT64_MIN, 60'000'000), -9'223'372'036'800'000'000);
  EXPECT_EQ(AlignUp(INT64_MIN + 5, kHour) % kHour, 0);
  EXPECT_LT(AlignUp(INT64_MIN + 5, kHour) - (INT64_MIN + 5), kHour);
}

TEST(FormatSize, ReadsLikeAFlag) {
  EXPECT_EQ(FormatSize(300'000'000), "5m");
  EXPECT_EQ(FormatSize(3'600'000'000), "1h");
  EXPECT_EQ(FormatSize(86'400'000'000), "1d");
  EXPECT_EQ(FormatSize(5'000'000), "5s");
}

TEST(ChooseSourceWindow, TheLargestStoredSizeThatDividesTheBucket) {
  constexpr int64_t kMin = 60'000'000;
  const std::vector<int64_t> stored = {kMin, 5 * kMin, 60 * kMin};
  EXPECT_EQ(*ChooseSourceWindow(60 * kMin, 0, stored), 60 * kMin);
  EXPECT_EQ(*ChooseSourceWindow(1440 * kMin, 0, stored), 60 * kMin);
  EXPECT_EQ(*ChooseSourceWindow(10 * kMin, 0, stored), 5 * kMin);
  EXPECT_EQ(*ChooseSourceWindow(7 * kMin, 0, stored), kMin);
  EXPECT_EQ(*ChooseSourceWindow(60 * kMin, 5 * kMin, stored), 5 * kMin);
}

TEST(ChooseSourceWindow, NoDividingSizeNamesTheSizesThatWork) {
  constexpr int64_t kSec = 1'000'000;
  const absl::StatusOr<int64_t> r = ChooseSourceWindow(7 * kSec, 0, {5 * kSec, 10 * kSec});
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("5s, 10s"), absl::string_view::npos) << r.status();
  EXPECT_NE(r.status().message().find("e.g. 10s"), absl::string_view::npos) << r.status();
  // A requested source that is not stored, or does not divide the bucket.
  EXPECT_EQ(ChooseSourceWindow(60 * kSec, 3 * kSec, {5 * kSec}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseSourceWindow(12 * kSec, 5 * kSec, {5 * kSec}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status none = ChooseSourceWindow(60 * kSec, 0, {}).status();
  EXPECT_NE(none.message().find("no aggregate has been stored"), absl::string_view::npos);
}

TEST(RequireStoredSize, UnknownSizeNamesTheStoredOnes) {
  const absl::Status s = RequireStoredSize(7'000'000, {5'000'000, 10'000'000}, "window_size_us");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("7s"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("5s, 10s"), absl::string_view::npos) << s;
  EXPECT_TRUE(RequireStoredSize(5'000'000, {5'000'000}, "window_size_us").ok());
}

TEST(ValidateRollup, RefusesWhatCanNeverWork) {
  v1::RollupRequest r;
  EXPECT_EQ(ValidateRollup(r, {}).code(), absl::StatusCode::kInvalidArgument);  // bucket 0
  r.set_bucket_us(3'600'000'000);
  EXPECT_TRUE(ValidateRollup(r, {}).ok());
  r.add_group_by("site");
  r.add_group_by("site");
  EXPECT_EQ(ValidateRollup(r, {}).code(), absl::StatusCode::kInvalidArgument);
  r.clear_group_by();
  r.add_group_by("");
  EXPECT_EQ(ValidateRollup(r, {}).code(), absl::StatusCode::kInvalidArgument);
}

constexpr int64_t kS = 1'000'000;

v1::InterpolateRequest Interp(v1::InterpolationMethod method, int64_t start, int64_t end,
                              int64_t step) {
  v1::InterpolateRequest r;
  r.set_method(method);
  r.mutable_range()->set_start_us(start);
  r.mutable_range()->set_end_us(end);
  r.set_step_us(step);
  return r;
}

std::map<int64_t, double> Steps(const std::vector<Observation>& obs,
                              const v1::InterpolateRequest& req) {
  std::map<int64_t, double> out;
  for (const v1::InterpolatedValue& v : InterpolateSteps(obs, req)) out[v.time_us()] = v.value();
  return out;
}

// Observations at 10 s (1.0) and 20 s (3.0); steps every 5 s in [0, 35 s).
const std::vector<Observation> kTwo = {{10 * kS, 1.0}, {20 * kS, 3.0}};

TEST(Interpolate, LinearNeverExtrapolates) {
  const auto got = Steps(kTwo, Interp(v1::INTERPOLATION_METHOD_LINEAR, 0, 35 * kS, 5 * kS));
  EXPECT_EQ(got, (std::map<int64_t, double>{{10 * kS, 1.0}, {15 * kS, 2.0}, {20 * kS, 3.0}}));
  // An unaligned start begins at the next multiple of the step.
  const auto from3 = Steps(kTwo, Interp(v1::INTERPOLATION_METHOD_LINEAR, 3 * kS, 35 * kS, 4 * kS));
  EXPECT_EQ(from3, (std::map<int64_t, double>{{12 * kS, 1.4}, {16 * kS, 1.0 + 2.0 * 0.6},
                                               {20 * kS, 3.0}}));
}

TEST(Interpolate, LocfCarriesForwardWithinTheLookback) {
  v1::InterpolateRequest r = Interp(v1::INTERPOLATION_METHOD_LOCF, 0, 35 * kS, 5 * kS);
  EXPECT_EQ(Steps(kTwo, r), (std::map<int64_t, double>{{10 * kS, 1.0},
                                                      {15 * kS, 1.0},
                                                      {20 * kS, 3.0},
                                                      {25 * kS, 3.0},
                                                      {30 * kS, 3.0}}));
  r.set_max_lookback_us(6 * kS);
  EXPECT_EQ(Steps(kTwo, r), (std::map<int64_t, double>{
                              {10 * kS, 1.0}, {15 * kS, 1.0}, {20 * kS, 3.0}, {25 * kS, 3.0}}));
}

TEST(Interpolate, ConstantFillsEveryStepWithoutAnObservation) {
  v1::InterpolateRequest r = Interp(v1::INTERPOLATION_METHOD_CONSTANT, 0, 35 * kS, 5 * kS);
  r.set_fill_value(7.0);
  EXPECT_EQ(Steps(kTwo, r), (std::map<int64_t, double>{{0, 7.0},
                                                      {5 * kS, 7.0},
                                                      {10 * kS, 1.0},
                                                      {15 * kS, 7.0},
                                                      {20 * kS, 3.0},
                                                      {25 * kS, 7.0},
                                                      {30 * kS, 7.0}}));
  // Without observations at all.
  EXPECT_EQ(Steps({}, r).size(), 7u);
}

TEST(Interpolate, NaturalCubicSplineOverUnevenlySpacedPoints) {
  // (0 s, 0), (1 s, 1), (3 s, 0): the natural spline has M1 = -1.5, so S(0.5) = 0.59375 and
  // S(2) = 0.875 (worked by hand from the tridiagonal system).
  const int64_t t0 = 1'700'000'000 * kS;
  const std::vector<Observation> obs = {{t0, 0.0}, {t0 + kS, 1.0}, {t0 + 3 * kS, 0.0}};
  const auto got =
      Steps(obs, Interp(v1::INTERPOLATION_METHOD_CUBIC_SPLINE, t0 - kS, t0 + 4 * kS, kS / 2));
  ASSERT_EQ(got.size(), 7u);  // t0 .. t0 + 3 s; nothing before the first or after the last
  EXPECT_DOUBLE_EQ(got.at(t0), 0.0);
  EXPECT_NEAR(got.at(t0 + kS / 2), 0.59375, 1e-12);
  EXPECT_DOUBLE_EQ(got.at(t0 + kS), 1.0);
  EXPECT_NEAR(got.at(t0 + 2 * kS), 0.875, 1e-12);
  EXPECT_DOUBLE_EQ(got.at(t0 + 3 * kS), 0.0);
  EXPECT_FALSE(got.contains(t0 - kS / 2));
  EXPECT_FALSE(got.contains(t0 + 3 * kS + kS / 2));
}

TEST(Interpolate, SplineThroughTwoPointsIsALine) {
  const auto got = Steps(kTwo, Interp(v1::INTERPOLATION_METHOD_CUBIC_SPLINE, 0, 35 * kS, 5 * kS));
  EXPECT_EQ(got, (std::map<int64_t, double>{{10 * kS, 1.0}, {15 * kS, 2.0}, {20 * kS, 3.0}}));
}

TEST(Interpolate, ASingleObservationGivesOnlyItsOwnStep) {
  const std::vector<Observation> one = {{10 * kS, 4.0}};
  EXPECT_EQ(Steps(one, Interp(v1::INTERPOLATION_METHOD_LINEAR, 0, 35 * kS, 5 * kS)),
            (std::map<int64_t, double>{{10 * kS, 4.0}}));
  EXPECT_TRUE(Steps(one, Interp(v1::INTERPOLATION_METHOD_LINEAR, 0, 35 * kS, 3 * kS)).empty());
}

TEST(ValidateInterpolate, RefusesStepZeroOpenRangesAndTooManySteps) {
  v1::InterpolateRequest r = Interp(v1::INTERPOLATION_METHOD_LINEAR, kS, 100 * kS, kS);
  EXPECT_TRUE(ValidateInterpolate(r, {}).ok());
  r.set_step_us(0);
  EXPECT_EQ(ValidateInterpolate(r, {}).code(), absl::StatusCode::kInvalidArgument);
  r.set_step_us(1);
  const absl::Status many = ValidateInterpolate(r, {});
  EXPECT_EQ(many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(many.message().find("larger step"), absl::string_view::npos) << many;
  r = Interp(v1::INTERPOLATION_METHOD_LINEAR, kS, 0, kS);
  EXPECT_EQ(ValidateInterpolate(r, {}).code(), absl::StatusCode::kInvalidArgument);
  // A range may start at the epoch itself.
  r = Interp(v1::INTERPOLATION_METHOD_LINEAR, 0, 3600 * kS, 60 * kS);
  EXPECT_TRUE(ValidateInterpolate(r, {}).ok()) << ValidateInterpolate(r, {});
  r = Interp(v1::INTERPOLATION_METHOD_UNSPECIFIED, kS, 10 * kS, kS);
  EXPECT_EQ(ValidateInterpolate(r, {}).code(), absl::StatusCode::kInvalidArgument);
  r = Interp(v1::INTERPOLATION_METHOD_LINEAR, kS, 10 * kS, kS);
  r.set_window_size_us(5 * kS);  // an aggregate source needs a field
  EXPECT_EQ(ValidateInterpolate(r, {}).code(), absl::StatusCode::kInvalidArgument);
  r.set_field(v1::AGGREGATE_FIELD_AVG);
  EXPECT_TRUE(ValidateInterpolate(r, {}).ok());
  EXPECT_STREQ(FieldColumn(v1::AGGREGATE_FIELD_LAST), "last");
}

TEST(ValidateInterpolate, ARangeAcrossTheWholeInt64SpanDoesNotWrapIntoFewSteps) {
  v1::InterpolateRequest r =
      Interp(v1::INTERPOLATION_METHOD_CONSTANT, -9'000'000'000'000'000'000,
             9'000'000'000'000'000'000, 3'600'000'000);
  EXPECT_GT(StepCount(r), 4'000'000);
  EXPECT_EQ(ValidateInterpolate(r, {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Selector, TwoEqualMatchersOnOneDimensionAreRefused) {
  v1::SeriesSelector s;
  *s.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_EQUAL, "a");
  *s.add_matchers() = Matcher("site", v1::DimensionMatcher::OP_EQUAL, "b");
  EXPECT_EQ(ValidateSelector(s, {}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tidemark::query
