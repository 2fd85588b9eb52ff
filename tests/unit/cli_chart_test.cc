#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tools/cli/chart.h"

namespace tidemark::cli {
namespace {

constexpr int64_t kSecond = 1'000'000;

// Points at 0 s, 1 s, 2 s, ... with the given values.
std::vector<ChartPoint> EverySecond(std::vector<double> values) {
  std::vector<ChartPoint> points;
  for (size_t i = 0; i < values.size(); ++i) {
    points.push_back({.time_us = static_cast<int64_t>(i) * kSecond, .value = values[i]});
  }
  return points;
}

TEST(Chart, FlatLineIsOnTheMiddleRowWithEqualLabels) {
  EXPECT_EQ(RenderChart(EverySecond({3, 3, 3, 3, 3}), {.width = 5, .height = 5}),
            "3 |\n"
            "  |\n"
            "  |*****\n"
            "  |\n"
            "3 |\n"
            "  +-----\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:04Z\n");
}

TEST(Chart, RisingLineIsADiagonal) {
  EXPECT_EQ(RenderChart(EverySecond({0, 1, 2, 3, 4}), {.width = 5, .height = 5}),
            "4 |    *\n"
            "  |   *\n"
            "  |  *\n"
            "  | *\n"
            "0 |*\n"
            "  +-----\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:04Z\n");
}

TEST(Chart, SteepStepIsJoined) {
  EXPECT_EQ(RenderChart(EverySecond({0, 8}), {.width = 2, .height = 5}),
            "8 | *\n"
            "  | |\n"
            "  | |\n"
            "  | |\n"
            "0 |*\n"
            "  +--\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:01Z\n");
}

TEST(Chart, SinglePointIsOneColumnWithOneTime) {
  const std::vector<ChartPoint> one = {{.time_us = 1'714'557'600 * kSecond, .value = 21.5}};
  EXPECT_EQ(RenderChart(one, {.width = 72, .height = 3}),
            "21.5 |\n"
            "     |*\n"
            "21.5 |\n"
            "     +-\n"
            "      2024-05-01T10:00:00Z\n");
}

TEST(Chart, EmptyInputSaysSo) {
  EXPECT_EQ(RenderChart({}, {}), "no data to chart\n");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(RenderChart(EverySecond({nan, nan}), {}), "no data to chart\n");
}

TEST(Chart, ResamplesByTimeNotByIndex) {
  // 11 columns over 10 s: the points at 0, 1, 9 and 10 s land in columns 0, 1, 9 and 10, and
  // the columns between show the straight line from 0 to 10 (rows 0, 1 and 2 by rounding
  // 1.25, 2.5, ... 8.75 on a scale of 0..2).
  const std::vector<ChartPoint> points = {{.time_us = 0, .value = 0},
                                          {.time_us = 10 * kSecond, .value = 10},
                                          {.time_us = 1 * kSecond, .value = 0},
                                          {.time_us = 9 * kSecond, .value = 10}};
  EXPECT_EQ(RenderChart(points, {.width = 11, .height = 3}),
            "10 |       ..**\n"
            "   |   ....\n"
            " 0 |**.\n"
            "   +-----------\n"
            "    1970-01-01T00:00:00Z 1970-01-01T00:00:10Z\n");
}

TEST(Chart, ColumnShowsMeanAndExtentOfItsPoints) {
  // Over 2 columns, 0 s goes to the first and 1 s and 2 s to the second: mean 3 of 2 and 4.
  EXPECT_EQ(RenderChart(EverySecond({0, 2, 4}), {.width = 2, .height = 5}),
            "4 | :\n"
            "  | *\n"
            "  | :\n"
            "  | |\n"
            "0 |*\n"
            "  +--\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:02Z\n");
}

TEST(Chart, AggregateBandSetsTheScale) {
  // avg 5 between min 0 and max 10, then avg 10 with a band that has a NaN end (dropped).
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<ChartPoint> points = {
      {.time_us = 0, .value = 5, .low = 0, .high = 10},
      {.time_us = 300 * kSecond, .value = 10, .low = nan, .high = 12}};
  EXPECT_EQ(RenderChart(points, {.width = 2, .height = 3}),
            "10 |:*\n"
            "   |*\n"
            " 0 |:\n"
            "   +--\n"
            "    1970-01-01T00:00:00Z 1970-01-01T00:05:00Z\n");
}

TEST(Chart, AxisLabelsAreAlwaysNumbers) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double max = std::numeric_limits<double>::max();
  const std::string chart =
      RenderChart(EverySecond({nan, -max, inf, max, -inf}), {.width = 8, .height = 4});
  EXPECT_EQ(chart.find("nan"), std::string::npos) << chart;
  EXPECT_EQ(chart.find("inf"), std::string::npos) << chart;
  EXPECT_EQ(chart.rfind(" 1.79769e+308 |", 0), 0u) << chart;
  EXPECT_NE(chart.find("\n-1.79769e+308 |*"), std::string::npos) << chart;

  // A flat line of negative zeros is labelled 0, not -0.
  EXPECT_EQ(RenderChart(EverySecond({-0.0, -0.0}), {.width = 2, .height = 2}),
            "0 |\n"
            "0 |**\n"
            "  +--\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:01Z\n");
}

TEST(Chart, SubSecondTimesAreLabelledInMicroseconds) {
  const std::vector<ChartPoint> points = {{.time_us = 1, .value = 1}, {.time_us = 2, .value = 2}};
  const std::string chart = RenderChart(points, {.width = 60, .height = 2});
  EXPECT_NE(chart.find("1970-01-01T00:00:00.000001Z"), std::string::npos) << chart;
  EXPECT_NE(chart.find("1970-01-01T00:00:00.000002Z"), std::string::npos) << chart;
}

TEST(Chart, WidthAndHeightAreClamped) {
  const std::string chart = RenderChart(EverySecond({1, 2}), {.width = 0, .height = 0});
  EXPECT_EQ(chart,
            "2 |*\n"
            "1 |:\n"
            "  +-\n"
            "   1970-01-01T00:00:00Z 1970-01-01T00:00:01Z\n");
}

}  // namespace
}  // namespace tidemark::cli
