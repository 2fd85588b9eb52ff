#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tidemark/v1/event.pb.h"
#include "tidemark/v1/query.pb.h"
#include "tools/cli/chart.h"

// How the commands print: one Output for every command, so that a flag means the same thing
// everywhere.
namespace tidemark::cli {

enum class Format { kTable, kCsv, kJson, kChart };

/// `--format`: table, csv, json or chart; anything else is InvalidArgument.
absl::StatusOr<Format> ParseFormat(absl::string_view text);

struct Output {
  Format format = Format::kTable;
  /// Rows to print in all pages together; 0 prints all.
  int64_t limit = 0;
  ChartOptions chart;
};

/// RFC 3339 in UTC with microseconds: what the API stores, so that a row can be found again.
std::string FormatTime(int64_t time_us);

/// A window, bucket or step size as a duration ("5m", "1h", "24h").
std::string FormatMicros(int64_t us);

/// The shortest text that reads back as the same double, for csv and json.
std::string ExactNumber(double v);

/// A value for a person: at most six significant digits.
std::string ShortNumber(double v);

/// The value as text: booleans as true/false, strings as they are, doubles exactly or, when
/// not `exact`, with six significant digits as a table shows them.
std::string MeasureText(const v1::MeasureValue& v, bool exact);

/// The value as JSON: a number, a boolean or a string (null when unset).
nlohmann::json MeasureJson(const v1::MeasureValue& v);

/// Numbers for a chart: doubles and int64s; false for booleans, strings and unset values.
bool MeasureNumber(const v1::MeasureValue& v, double* number);

/// An aggregate as table columns (count avg min max sum first last, six significant digits),
/// and the headings above them.
std::string AggregateColumns(const v1::AggregateValue& v);
std::string AggregateHeadings();

/// An aggregate as CSV fields in the same order, exactly.
std::string AggregateCsv(const v1::AggregateValue& v);

/// Adds the aggregate's fields to a JSON object.
void AddAggregateJson(const v1::AggregateValue& v, nlohmann::json& object);

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
std::string CsvField(absl::string_view text);

/// One line of JSON. Invalid UTF-8 in a dimension value is replaced rather than thrown on.
void PrintJsonLine(const nlohmann::json& object);

}  // namespace tidemark::cli
