#include "tools/cli/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace tidemark::cli {
namespace {

constexpr char kMean = '*';
constexpr char kBetween = '.';
constexpr char kJoin = '|';
constexpr char kBand = ':';
constexpr char kNoData[] = "no data to chart\n";

// What the points that fell into one column add up to.
struct Column {
  int count = 0;
  double value = 0;  // the mean of the points, or interpolated when count == 0
  double low = 0;    // the extent of the points and their bands, when count > 0
  double high = 0;
  bool band = false;
};

// Keeps the finite points; a band with a non-finite end is dropped rather than the point,
// since the value itself is still worth drawing.
std::vector<ChartPoint> FinitePoints(std::span<const ChartPoint> points) {
  std::vector<ChartPoint> finite;
  finite.reserve(points.size());
  for (const ChartPoint& p : points) {
    if (!std::isfinite(p.value)) continue;
    ChartPoint q = p;
    if (!q.low || !q.high || !std::isfinite(*q.low) || !std::isfinite(*q.high)) {
      q.low.reset();
      q.high.reset();
    }
    finite.push_back(q);
  }
  return finite;
}

// 128-bit, because a span of decades in microseconds times the width passes 2^63.
int ColumnOf(int64_t time_us, int64_t first_us, int64_t last_us, int columns) {
  if (columns == 1) return 0;
  const absl::int128 offset = absl::int128(time_us) - absl::int128(first_us);
  const absl::int128 span = absl::int128(last_us) - absl::int128(first_us);
  return std::min(columns - 1, static_cast<int>(offset * columns / span));
}

std::vector<Column> Resample(const std::vector<ChartPoint>& points, int64_t first_us,
                             int64_t last_us, int columns) {
  std::vector<Column> cols(columns);
  for (const ChartPoint& p : points) {
    Column& col = cols[ColumnOf(p.time_us, first_us, last_us, columns)];
    double low = p.value;
    double high = p.value;
    if (p.low) {
      low = std::min({low, *p.low, *p.high});
      high = std::max({high, *p.low, *p.high});
      col.band = true;
    }
    if (col.count == 0) {
      col.low = low;
      col.high = high;
    } else {
      col.low = std::min(col.low, low);
      col.high = std::max(col.high, high);
      col.band = true;
    }
    ++col.count;
    // A running mean, because a sum of large values can overflow where their mean does not.
    col.value += (p.value - col.value) / col.count;
  }
  int previous = -1;
  for (int c = 0; c < columns; ++c) {
    if (cols[c].count == 0) continue;
    for (int k = previous + 1; previous >= 0 && k < c; ++k) {
      // Weighted rather than a + (b - a) * f, whose difference overflows at the extremes.
      const double f = static_cast<double>(k - previous) / (c - previous);
      cols[k].value = cols[previous].value * (1 - f) + cols[c].value * f;
    }
    previous = c;
  }
  return cols;
}

std::string ValueLabel(double v) {
  std::string label = absl::StrFormat("%.6g", v);
  return label == "-0" ? "0" : label;
}

std::string TimeLabel(int64_t time_us, bool sub_second) {
  return absl::FormatTime(sub_second ? "%Y-%m-%dT%H:%M:%E6SZ" : "%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixMicros(time_us), absl::UTCTimeZone());
}

void AppendTrimmed(std::string& out, std::string line) {
  line.erase(line.find_last_not_of(' ') + 1);
  absl::StrAppend(&out, line, "\n");
}

}  // namespace

std::string RenderChart(std::span<const ChartPoint> points, const ChartOptions& options) {
  const int width = std::clamp(options.width, 1, 1000);
  const int height = std::clamp(options.height, 2, 200);
  const std::vector<ChartPoint> finite = FinitePoints(points);
  if (finite.empty()) return kNoData;

  const auto [first, last] = std::minmax_element(
      finite.begin(), finite.end(),
      [](const ChartPoint& a, const ChartPoint& b) { return a.time_us < b.time_us; });
  const int64_t first_us = first->time_us;
  const int64_t last_us = last->time_us;
  const int columns = first_us == last_us ? 1 : width;
  const std::vector<Column> cols = Resample(finite, first_us, last_us, columns);

  double low = cols[0].low;
  double high = cols[0].high;
  for (const Column& col : cols) {
    if (col.count == 0) continue;
    low = std::min(low, col.low);
    high = std::max(high, col.high);
  }
  // Halved, so that the extremes of double do not overflow the subtraction.
  const double range = high / 2 - low / 2;
  auto row_of = [&](double v) {
    if (range <= 0) return (height - 1) / 2;
    double fraction = (v / 2 - low / 2) / range;
    if (!std::isfinite(fraction)) fraction = 0.5;
    return static_cast<int>(std::lround(std::clamp(fraction, 0.0, 1.0) * (height - 1)));
  };

  // grid[0] is the top row; row_of counts from the bottom.
  std::vector<std::string> grid(height, std::string(columns, ' '));
  auto cell = [&](int row, int column) -> char& { return grid[height - 1 - row][column]; };
  int previous_row = 0;
  for (int c = 0; c < columns; ++c) {
    const Column& col = cols[c];
    const int row = row_of(col.value);
    if (col.count > 0 && col.band) {
      for (int r = row_of(col.low); r <= row_of(col.high); ++r) cell(r, c) = kBand;
    }
    if (c > 0) {
      for (int r = std::min(row, previous_row) + 1; r < std::max(row, previous_row); ++r) {
        if (cell(r, c) == ' ') cell(r, c) = kJoin;
      }
    }
    cell(row, c) = col.count > 0 ? kMean : kBetween;
    previous_row = row;
  }

  const std::string top = ValueLabel(high);
  const std::string bottom = ValueLabel(low);
  const int label_width = static_cast<int>(std::max(top.size(), bottom.size()));
  std::string out;
  for (int i = 0; i < height; ++i) {
    const std::string label = i == 0 ? top : i == height - 1 ? bottom : "";
    AppendTrimmed(out, absl::StrFormat("%*s |%s", label_width, label, grid[i]));
  }
  AppendTrimmed(out, absl::StrCat(std::string(label_width, ' '), " +", std::string(columns, '-')));

  const bool sub_second = first_us % 1'000'000 != 0 || last_us % 1'000'000 != 0;
  const std::string start = TimeLabel(first_us, sub_second);
  std::string axis = absl::StrCat(std::string(label_width + 2, ' '), start);
  if (last_us != first_us) {
    const std::string end = TimeLabel(last_us, sub_second);
    const int gap = std::max<int>(1, columns - static_cast<int>(start.size() + end.size()));
    absl::StrAppend(&axis, std::string(gap, ' '), end);
  }
  AppendTrimmed(out, axis);
  return out;
}

}  // namespace tidemark::cli
