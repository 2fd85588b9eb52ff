#include "services/query/query_core.h"

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

TEST(PageSize, DefaultsAndCaps) {
  EXPECT_EQ(*PageSize(0, 100, 1000), 100);
  EXPECT_EQ(*PageSize(5000, 100, 1000), 1000);
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

}  // namespace
}  // namespace tidemark::query
