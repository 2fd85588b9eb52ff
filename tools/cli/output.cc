#include "tools/cli/output.h"

#include <charconv>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace tidemark::cli {

absl::StatusOr<Format> ParseFormat(absl::string_view text) {
  if (text == "table") return Format::kTable;
  if (text == "csv") return Format::kCsv;
  if (text == "json") return Format::kJson;
  if (text == "chart") return Format::kChart;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: \"", text, "\" is not one of table, csv, json, chart"));
}

std::string FormatTime(int64_t time_us) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(time_us),
                          absl::UTCTimeZone());
}

std::string FormatMicros(int64_t us) { return absl::FormatDuration(absl::Microseconds(us)); }

std::string ExactNumber(double v) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string ShortNumber(double v) { return absl::StrCat(v); }

std::string MeasureText(const v1::MeasureValue& v, bool exact) {
  switch (v.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      return exact ? ExactNumber(v.double_value()) : ShortNumber(v.double_value());
    case v1::MeasureValue::kInt64Value:
      return absl::StrCat(v.int64_value());
    case v1::MeasureValue::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case v1::MeasureValue::kStringValue:
      return v.string_value();
    case v1::MeasureValue::VALUE_NOT_SET:
      return "";
  }
  return "";
}

nlohmann::json MeasureJson(const v1::MeasureValue& v) {
  switch (v.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      return v.double_value();
    case v1::MeasureValue::kInt64Value:
      return v.int64_value();
    case v1::MeasureValue::kBoolValue:
      return v.bool_value();
    case v1::MeasureValue::kStringValue:
      return v.string_value();
    case v1::MeasureValue::VALUE_NOT_SET:
      return nullptr;
  }
  return nullptr;
}

bool MeasureNumber(const v1::MeasureValue& v, double* number) {
  switch (v.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      *number = v.double_value();
      return true;
    case v1::MeasureValue::kInt64Value:
      *number = static_cast<double>(v.int64_value());
      return true;
    case v1::MeasureValue::kBoolValue:
    case v1::MeasureValue::kStringValue:
    case v1::MeasureValue::VALUE_NOT_SET:
      return false;
  }
  return false;
}

std::string AggregateColumns(const v1::AggregateValue& v) {
  return absl::StrFormat("%8d %12s %12s %12s %12s %12s %12s", v.count(), ShortNumber(v.avg()),
                         ShortNumber(v.min()), ShortNumber(v.max()), ShortNumber(v.sum()),
                         ShortNumber(v.first()), ShortNumber(v.last()));
}

std::string AggregateHeadings() {
  return absl::StrFormat("%8s %12s %12s %12s %12s %12s %12s", "count", "avg", "min", "max", "sum",
                         "first", "last");
}

std::string AggregateCsv(const v1::AggregateValue& v) {
  return absl::StrCat(v.count(), ",", ExactNumber(v.avg()), ",", ExactNumber(v.min()), ",",
                      ExactNumber(v.max()), ",", ExactNumber(v.sum()), ",", ExactNumber(v.first()),
                      ",", ExactNumber(v.last()));
}

void AddAggregateJson(const v1::AggregateValue& v, nlohmann::json& object) {
  object["count"] = v.count();
  object["avg"] = v.avg();
  object["min"] = v.min();
  object["max"] = v.max();
  object["sum"] = v.sum();
  object["first"] = v.first();
  object["last"] = v.last();
}

std::string CsvField(absl::string_view text) {
  if (text.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(text);
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

void PrintJsonLine(const nlohmann::json& object) {
  const std::string line = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", line.c_str());
}

}  // namespace tidemark::cli
