#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace tidemark::cli {

/// One observation of the series to chart.
struct ChartPoint {
  int64_t time_us = 0;
  double value = 0;
  /// The extent the value summarises (an aggregate's min and max). When both are set they are
  /// drawn as a band behind the line.
  std::optional<double> low;
  std::optional<double> high;
};

struct ChartOptions {
  /// Columns of the plot area, not counting the y-axis labels; clamped to [1, 1000].
  int width = 72;
  /// Rows of the plot area; clamped to [2, 200].
  int height = 12;
};

/// Draws one series as a plain-ASCII line chart of `height` rows, ending in a newline. Seven
/// points ten minutes apart, width 44, height 5:
///
///     30.5 |                           ..*....
///          |                      *....       ..*....
///          |              *.......                   ..*
///          |        ......
///       12 |*......*
///          +--------------------------------------------
///           2024-05-01T10:00:00Z    2024-05-01T11:00:00Z
///
/// The points are resampled to `width` columns by time: the first point's time is the first
/// column, the last point's time the last one (one column when all times are equal). A column
/// with points shows their mean as `*` and, when it holds several points or points with a
/// low/high, their extent as a `:` band; a column between two such columns shows the straight
/// line between them as `.`; `|` joins columns whose rows are more than one apart. The top and
/// bottom labels are the largest and smallest value or band end; a flat series is drawn on the
/// middle row (the lower of the two when `height` is even). Non-finite values (and bands with
/// a non-finite end) are left out, so the labels are always numbers; with nothing left the
/// result is "no data to chart\n".
///
/// A pure function of its arguments; the points need not be sorted.
std::string RenderChart(std::span<const ChartPoint> points, const ChartOptions& options);

}  // namespace tidemark::cli
