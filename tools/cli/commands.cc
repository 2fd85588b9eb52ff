#include "tools/cli/commands.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "tools/cli/chart.h"
#include "tools/cli/rpc_status.h"

namespace tidemark::cli {
namespace {

constexpr int64_t kDefaultRows = 100;

// --- Preparing -------------------------------------------------------------------------------

constexpr CommandFlag kCommandFlags[] = {
    {"window", "aggregates, interpolate, subscribe"},
    {"real_time", "aggregates"},
    {"bucket", "rollup"},
    {"source_window", "rollup"},
    {"group_by", "rollup"},
    {"step", "interpolate"},
    {"method", "interpolate"},
    {"field", "interpolate"},
    {"max_lookback", "interpolate"},
    {"fill", "interpolate"},
    {"resume", "subscribe"},
};

// Every flag of kCommandFlags is empty or unset unless given (defaults apply later).
absl::Status CheckFlagsApply(const Invocation& in) {
  const std::pair<absl::string_view, bool> given[] = {
      {"window", !in.window.empty()},
      {"real_time", in.real_time},
      {"bucket", !in.bucket.empty()},
      {"step", !in.step.empty()},
      {"method", !in.method.empty()},
      {"source_window", !in.source_window.empty()},
      {"group_by", !in.group_by.empty()},
      {"field", !in.field.empty()},
      {"max_lookback", !in.max_lookback.empty()},
      {"fill", in.fill.has_value()},
      {"resume", !in.resume.empty()},
  };
  for (const auto& [flag, is_given] : given) {
    if (!is_given || in.from_environment.contains(std::string(flag))) continue;
    for (const CommandFlag& f : kCommandFlags) {
      if (f.flag != flag) continue;
      const std::vector<absl::string_view> commands = absl::StrSplit(f.commands, ", ");
      if (std::find(commands.begin(), commands.end(), in.command) == commands.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag, " applies to ", f.commands, ", not to ", in.command));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SeriesSelector> Selector(const Invocation& in) {
  v1::SeriesSelector selector;
  selector.set_measure_name(in.measure);
  absl::StatusOr<std::vector<v1::DimensionMatcher>> matchers = ParseMatchers(in.where);
  if (!matchers.ok()) return matchers.status();
  for (v1::DimensionMatcher& m : *matchers) *selector.add_matchers() = std::move(m);
  return selector;
}

absl::StatusOr<v1::InterpolateRequest> InterpolateRequest(const Invocation& in,
                                                          v1::TimeRange range) {
  v1::InterpolateRequest req;
  *req.mutable_range() = range;
  absl::StatusOr<int64_t> step = ParsePositiveMicros("step", in.step.empty() ? "1m" : in.step);
  if (!step.ok()) return step.status();
  req.set_step_us(*step);
  absl::StatusOr<v1::InterpolationMethod> method =
      ParseMethod(in.method.empty() ? "linear" : in.method);
  if (!method.ok()) return method.status();
  req.set_method(*method);
  if (!in.window.empty()) {
    absl::StatusOr<int64_t> window = ParsePositiveMicros("window", in.window);
    if (!window.ok()) return window.status();
    absl::StatusOr<v1::AggregateField> field = ParseField(in.field.empty() ? "avg" : in.field);
    if (!field.ok()) return field.status();
    req.set_window_size_us(*window);
    req.set_field(*field);
  } else if (!in.field.empty()) {
    return absl::InvalidArgumentError(
        "--field picks a field of stored windows: give their size with --window (for example "
        "--window=5m --field=max)");
  }
  if (!in.max_lookback.empty()) {
    if (*method != v1::INTERPOLATION_METHOD_LOCF) {
      return absl::InvalidArgumentError("--max_lookback applies to --method=locf only");
    }
    absl::StatusOr<int64_t> lookback = ParsePositiveMicros("max_lookback", in.max_lookback);
    if (!lookback.ok()) return lookback.status();
    req.set_max_lookback_us(*lookback);
  }
  if (in.fill.has_value()) {
    if (*method != v1::INTERPOLATION_METHOD_CONSTANT) {
      return absl::InvalidArgumentError("--fill applies to --method=constant only");
    }
    req.set_fill_value(*in.fill);
  }
  return req;
}

// --- Printing --------------------------------------------------------------------------------

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

// Counts the rows printed against --limit.
class Rows final {
 public:
  explicit Rows(int64_t limit) : limit_(limit) {}
  bool full() const { return limit_ > 0 && printed_ >= limit_; }
  void Add() { ++printed_; }
  // The table formats end with the count on stderr, where it does not mix with the rows.
  void Summarize(const Output& out, absl::string_view noun) const {
    if (out.format != Format::kTable) return;
    std::fprintf(stderr, "%ld %s%s\n", printed_, std::string(noun).c_str(),
                 full() ? " (--limit reached; --limit=0 prints all)" : "");
  }

 private:
  const int64_t limit_;
  int64_t printed_ = 0;
};

// A table prints "# <series>" above each series' rows; a series continued on the next page
// keeps its one heading.
class Headings final {
 public:
  // Returns whether `key` starts a new section.
  bool Start(const std::string& key) {
    if (last_ && *last_ == key) return false;
    last_ = key;
    return true;
  }

 private:
  std::optional<std::string> last_;
};

// Collects the first series (or group) of a chart. Rows come ordered by series, so the first
// row of another series means the first one is complete and reading can stop.
class FirstSeriesChart final {
 public:
  // `what` names what is charted in the note about the others: "series" or "groups".
  FirstSeriesChart(const Output& out, absl::string_view what) : out_(out), what_(what) {}

  // Whether rows of `key` belong to the chart.
  bool Takes(const std::string& key) {
    if (!key_) key_ = key;
    if (*key_ == key) return true;
    more_ = true;
    return false;
  }
  // Whether to stop reading: the series is complete or --limit rows are in.
  bool done() const { return more_ || (out_.limit > 0 && Size() >= out_.limit); }
  void Add(ChartPoint p) { points_.push_back(p); }

  void Print() const {
    if (more_) {
      std::fprintf(stderr,
                   "tidemark: several %s matched; charting the first, %s (narrow the "
                   "selection with --measure and --where)\n",
                   std::string(what_).c_str(), key_->c_str());
    }
    if (key_) std::printf("%s\n", key_->c_str());
    std::fputs(RenderChart(points_, out_.chart).c_str(), stdout);
  }

 private:
  int64_t Size() const { return static_cast<int64_t>(points_.size()); }

  const Output& out_;
  const absl::string_view what_;
  std::optional<std::string> key_;
  bool more_ = false;
  std::vector<ChartPoint> points_;
};

std::string VersionText(int64_t version, bool partial) {
  return partial ? "partial" : absl::StrCat("v", version);
}

// The chart of aggregates draws the mean with the range of values behind it.
ChartPoint AggregatePoint(int64_t time_us, const v1::AggregateValue& v) {
  return {.time_us = time_us, .value = v.avg(), .low = v.min(), .high = v.max()};
}

// --- Commands --------------------------------------------------------------------------------

int ListSeries(v1::ListSeriesRequest req, const Output& out, v1::QueryService::StubInterface& stub,
               absl::Duration timeout) {
  Rows rows(out.limit);
  if (out.format == Format::kCsv) std::printf("series_id,measure_name,canonical_key\n");
  do {
    v1::ListSeriesResponse resp;
    if (grpc::Status s = stub.ListSeries(Context(timeout).get(), req, &resp); !s.ok()) {
      return Fail(s);
    }
    for (const v1::Series& series : resp.series()) {
      if (rows.full()) break;
      if (out.format == Format::kJson) {
        PrintJsonLine({{"series_id", series.series_id()},
                       {"measure_name", series.measure_name()},
                       {"canonical_key", series.canonical_key()}});
      } else if (out.format == Format::kCsv) {
        std::printf("%ld,%s,%s\n", series.series_id(), CsvField(series.measure_name()).c_str(),
                    CsvField(series.canonical_key()).c_str());
      } else {
        std::printf("%20ld  %s\n", series.series_id(), series.canonical_key().c_str());
      }
      rows.Add();
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty() && !rows.full());
  rows.Summarize(out, "series");
  return 0;
}

int ReadPoints(v1::ReadPointsRequest req, const Output& out, v1::QueryService::StubInterface& stub,
               absl::Duration timeout) {
  Rows rows(out.limit);
  Headings headings;
  FirstSeriesChart chart(out, "series");
  // The series as every other CSV names it (the measure and its dimensions), so that rows of
  // different devices are told apart without a lookup of series_id.
  if (out.format == Format::kCsv) std::printf("time,series_id,canonical_key,value,version\n");
  do {
    v1::ReadPointsResponse resp;
    if (grpc::Status s = stub.ReadPoints(Context(timeout).get(), req, &resp); !s.ok()) {
      return Fail(s);
    }
    for (const v1::SeriesPoints& sp : resp.series()) {
      const v1::Series& series = sp.series();
      if (out.format == Format::kChart) {
        if (!chart.Takes(series.canonical_key())) break;
        for (const v1::Point& p : sp.points()) {
          double v;
          if (MeasureNumber(p.value(), &v)) chart.Add({.time_us = p.time_us(), .value = v});
        }
        continue;
      }
      if (rows.full()) break;
      if (out.format == Format::kTable && headings.Start(series.canonical_key())) {
        std::printf("# %s\n", series.canonical_key().c_str());
      }
      for (const v1::Point& p : sp.points()) {
        if (rows.full()) break;
        if (out.format == Format::kJson) {
          PrintJsonLine({{"time", FormatTime(p.time_us())},
                         {"series_id", series.series_id()},
                         {"canonical_key", series.canonical_key()},
                         {"value", MeasureJson(p.value())},
                         {"version", p.version()}});
        } else if (out.format == Format::kCsv) {
          std::printf("%s,%ld,%s,%s,%ld\n", FormatTime(p.time_us()).c_str(), series.series_id(),
                      CsvField(series.canonical_key()).c_str(),
                      CsvField(MeasureText(p.value(), /*exact=*/true)).c_str(), p.version());
        } else {
          std::printf("  %s  %16s  v%ld\n", FormatTime(p.time_us()).c_str(),
                      MeasureText(p.value(), /*exact=*/false).c_str(), p.version());
        }
        rows.Add();
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty() && !rows.full() && !chart.done());
  if (out.format == Format::kChart) {
    chart.Print();
  } else {
    rows.Summarize(out, "points");
  }
  return 0;
}

int ReadAggregates(v1::ReadAggregatesRequest req, const Output& out,
                   v1::QueryService::StubInterface& stub, absl::Duration timeout) {
  Rows rows(out.limit);
  Headings headings;
  FirstSeriesChart chart(out, "series");
  if (out.format == Format::kCsv) {
    std::printf(
        "window_start,window_size,series_id,canonical_key,count,avg,min,max,sum,first,last,"
        "version,partial\n");
  }
  do {
    v1::ReadAggregatesResponse resp;
    if (grpc::Status s = stub.ReadAggregates(Context(timeout).get(), req, &resp); !s.ok()) {
      return Fail(s);
    }
    const std::string size = FormatMicros(resp.window_size_us());
    for (const v1::SeriesWindows& sw : resp.series()) {
      const v1::Series& series = sw.series();
      if (out.format == Format::kChart) {
        if (!chart.Takes(series.canonical_key())) break;
        for (const v1::AggregateWindow& w : sw.windows()) {
          // An empty window has no mean to draw.
          if (w.value().count() > 0) chart.Add(AggregatePoint(w.start_us(), w.value()));
        }
        continue;
      }
      if (rows.full()) break;
      if (out.format == Format::kTable && headings.Start(series.canonical_key())) {
        std::printf("# %s  (%s windows)\n  %-27s %s  version\n", series.canonical_key().c_str(),
                    size.c_str(), "window_start", AggregateHeadings().c_str());
      }
      for (const v1::AggregateWindow& w : sw.windows()) {
        if (rows.full()) break;
        if (out.format == Format::kJson) {
          nlohmann::json j = {{"window_start", FormatTime(w.start_us())},
                              {"window_size", size},
                              {"series_id", series.series_id()},
                              {"canonical_key", series.canonical_key()}};
          AddAggregateJson(w.value(), j);
          j["version"] = w.version();
          j["partial"] = w.partial();
          PrintJsonLine(j);
        } else if (out.format == Format::kCsv) {
          std::printf("%s,%s,%ld,%s,%s,%ld,%s\n", FormatTime(w.start_us()).c_str(), size.c_str(),
                      series.series_id(), CsvField(series.canonical_key()).c_str(),
                      AggregateCsv(w.value()).c_str(), w.version(), w.partial() ? "true" : "false");
        } else {
          std::printf("  %-27s %s  %s\n", FormatTime(w.start_us()).c_str(),
                      AggregateColumns(w.value()).c_str(),
                      VersionText(w.version(), w.partial()).c_str());
        }
        rows.Add();
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty() && !rows.full() && !chart.done());
  if (out.format == Format::kChart) {
    chart.Print();
  } else {
    rows.Summarize(out, "windows");
  }
  return 0;
}

// A group is named by its dimension values in --group_by order, or by its one series.
std::string GroupLabel(const v1::RollupRequest& req, const v1::RollupGroup& group) {
  if (req.group_by().empty()) return group.series().canonical_key();
  std::vector<std::string> parts;
  for (const std::string& name : req.group_by()) {
    const auto it = group.group().find(name);
    parts.push_back(absl::StrCat(name, "=\"", it == group.group().end() ? "" : it->second, "\""));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

int Rollup(v1::RollupRequest req, const Output& out, v1::QueryService::StubInterface& stub,
           absl::Duration timeout) {
  Rows rows(out.limit);
  Headings headings;
  FirstSeriesChart chart(out, req.group_by().empty() ? "series" : "groups");
  const std::string bucket = FormatMicros(req.bucket_us());
  if (out.format == Format::kCsv) {
    std::printf(
        "bucket_start,bucket_size,group,series_id,count,avg,min,max,sum,first,last,windows,"
        "series_count\n");
  }
  do {
    v1::RollupResponse resp;
    if (grpc::Status s = stub.Rollup(Context(timeout).get(), req, &resp); !s.ok()) {
      return Fail(s);
    }
    const std::string source = FormatMicros(resp.source_window_size_us());
    for (const v1::RollupGroup& group : resp.groups()) {
      const std::string label = GroupLabel(req, group);
      if (out.format == Format::kChart) {
        if (!chart.Takes(label)) break;
        for (const v1::RollupBucket& b : group.buckets()) {
          if (b.value().count() > 0) chart.Add(AggregatePoint(b.start_us(), b.value()));
        }
        continue;
      }
      if (rows.full()) break;
      if (out.format == Format::kTable && headings.Start(label)) {
        std::printf("# %s  (%s buckets of %s windows)\n  %-27s %s  windows  series\n",
                    label.c_str(), bucket.c_str(), source.c_str(), "bucket_start",
                    AggregateHeadings().c_str());
      }
      const std::string series_id =
          group.has_series() ? absl::StrCat(group.series().series_id()) : "";
      for (const v1::RollupBucket& b : group.buckets()) {
        if (rows.full()) break;
        if (out.format == Format::kJson) {
          nlohmann::json j = {{"bucket_start", FormatTime(b.start_us())},
                              {"bucket_size", bucket},
                              {"source_window_size", source}};
          if (group.has_series()) {
            j["series_id"] = group.series().series_id();
            j["canonical_key"] = group.series().canonical_key();
          } else {
            j["group"] = nlohmann::json::object();
            for (const auto& [name, value] : group.group()) j["group"][name] = value;
          }
          AddAggregateJson(b.value(), j);
          j["windows"] = b.windows();
          j["series_count"] = b.series_count();
          PrintJsonLine(j);
        } else if (out.format == Format::kCsv) {
          std::printf("%s,%s,%s,%s,%s,%ld,%ld\n", FormatTime(b.start_us()).c_str(), bucket.c_str(),
                      CsvField(label).c_str(), series_id.c_str(), AggregateCsv(b.value()).c_str(),
                      b.windows(), b.series_count());
        } else {
          std::printf("  %-27s %s  %7ld  %6ld\n", FormatTime(b.start_us()).c_str(),
                      AggregateColumns(b.value()).c_str(), b.windows(), b.series_count());
        }
        rows.Add();
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty() && !rows.full() && !chart.done());
  if (out.format == Format::kChart) {
    chart.Print();
  } else {
    rows.Summarize(out, "buckets");
  }
  return 0;
}

int Interpolate(v1::InterpolateRequest req, const Output& out,
                v1::QueryService::StubInterface& stub, absl::Duration timeout) {
  Rows rows(out.limit);
  FirstSeriesChart chart(out, "series");
  if (out.format == Format::kCsv) std::printf("time,series_id,canonical_key,value\n");
  do {
    v1::InterpolateResponse resp;
    if (grpc::Status s = stub.Interpolate(Context(timeout).get(), req, &resp); !s.ok()) {
      return Fail(s);
    }
    for (const v1::InterpolatedSeries& is : resp.series()) {
      const v1::Series& series = is.series();
      if (out.format == Format::kChart) {
        if (!chart.Takes(series.canonical_key())) break;
        for (const v1::InterpolatedValue& v : is.values()) {
          if (chart.done()) break;
          chart.Add({.time_us = v.time_us(), .value = v.value()});
        }
        continue;
      }
      if (rows.full()) break;
      if (out.format == Format::kTable) std::printf("# %s\n", series.canonical_key().c_str());
      for (const v1::InterpolatedValue& v : is.values()) {
        if (rows.full()) break;
        if (out.format == Format::kJson) {
          PrintJsonLine({{"time", FormatTime(v.time_us())},
                         {"series_id", series.series_id()},
                         {"canonical_key", series.canonical_key()},
                         {"value", v.value()}});
        } else if (out.format == Format::kCsv) {
          std::printf("%s,%ld,%s,%s\n", FormatTime(v.time_us()).c_str(), series.series_id(),
                      CsvField(series.canonical_key()).c_str(), ExactNumber(v.value()).c_str());
        } else {
          std::printf("  %-27s %16s\n", FormatTime(v.time_us()).c_str(),
                      ShortNumber(v.value()).c_str());
        }
        rows.Add();
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty() && !rows.full() && !chart.done());
  if (out.format == Format::kChart) {
    chart.Print();
  } else {
    rows.Summarize(out, "values");
  }
  return 0;
}

}  // namespace

std::span<const CommandFlag> CommandFlags() { return kCommandFlags; }

absl::StatusOr<Command> Prepare(const Invocation& in, absl::Time now) {
  static constexpr absl::string_view kCommands[] = {"series", "points",      "aggregates",
                                                    "rollup", "interpolate", "subscribe"};
  if (std::find(std::begin(kCommands), std::end(kCommands), in.command) == std::end(kCommands)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", in.command, "\"; `tidemark help` lists them"));
  }
  if (absl::Status s = CheckFlagsApply(in); !s.ok()) return s;

  Command cmd;
  absl::StatusOr<Format> format = ParseFormat(in.format);
  if (!format.ok()) return format.status();
  if (*format == Format::kChart && (in.command == "series" || in.command == "subscribe")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--format=chart draws points, aggregates, rollup and interpolate; ",
                     in.command, " prints table, csv or json"));
  }
  if (in.limit.has_value() && *in.limit < 0) {
    return absl::InvalidArgumentError("--limit must be 0 (all) or more");
  }
  if (in.width < 1 || in.width > 1000) {
    return absl::InvalidArgumentError("--width must be between 1 and 1000 columns");
  }
  if (in.height < 2 || in.height > 200) {
    return absl::InvalidArgumentError("--height must be between 2 and 200 rows");
  }
  cmd.output.format = *format;
  // A chart wants its whole series and a subscription runs until stopped.
  const bool unbounded = *format == Format::kChart || in.command == "subscribe";
  cmd.output.limit = in.limit.value_or(unbounded ? 0 : kDefaultRows);
  cmd.output.chart = {.width = in.width, .height = in.height};

  absl::StatusOr<v1::SeriesSelector> selector = Selector(in);
  if (!selector.ok()) return selector.status();

  if (in.command == "series") {
    v1::ListSeriesRequest req;
    *req.mutable_selector() = *std::move(selector);
    cmd.request = std::move(req);
    return cmd;
  }
  if (in.command == "subscribe") {
    v1::SubscribeRequest req;
    *req.mutable_selector() = *std::move(selector);
    absl::StatusOr<std::vector<int64_t>> sizes = ParseMicrosList("window", in.window);
    if (!sizes.ok()) return sizes.status();
    for (int64_t size : *sizes) req.add_window_sizes_us(size);
    req.set_resume_token(in.resume);
    cmd.request = std::move(req);
    return cmd;
  }

  absl::StatusOr<v1::TimeRange> range = ResolveRange(in.range, now);
  if (!range.ok()) return range.status();
  if (in.command == "points") {
    v1::ReadPointsRequest req;
    *req.mutable_selector() = *std::move(selector);
    *req.mutable_range() = *range;
    req.set_limit(cmd.output.limit);
    cmd.request = std::move(req);
  } else if (in.command == "aggregates") {
    absl::StatusOr<int64_t> window =
        ParsePositiveMicros("window", in.window.empty() ? "5m" : in.window);
    if (!window.ok()) return window.status();
    v1::ReadAggregatesRequest req;
    *req.mutable_selector() = *std::move(selector);
    // Windows are selected by their start: include the one already open at the range start.
    range->set_start_us(AlignDown(range->start_us(), *window));
    *req.mutable_range() = *range;
    req.set_window_size_us(*window);
    req.set_real_time(in.real_time);
    req.set_limit(cmd.output.limit);
    cmd.request = std::move(req);
  } else if (in.command == "rollup") {
    absl::StatusOr<int64_t> bucket =
        ParsePositiveMicros("bucket", in.bucket.empty() ? "1h" : in.bucket);
    if (!bucket.ok()) return bucket.status();
    v1::RollupRequest req;
    *req.mutable_selector() = *std::move(selector);
    // Buckets are selected by their start, as windows are.
    range->set_start_us(AlignDown(range->start_us(), *bucket));
    *req.mutable_range() = *range;
    req.set_bucket_us(*bucket);
    if (!in.source_window.empty()) {
      absl::StatusOr<int64_t> source = ParsePositiveMicros("source_window", in.source_window);
      if (!source.ok()) return source.status();
      req.set_source_window_size_us(*source);
    }
    for (const std::string& name : in.group_by) {
      const absl::string_view trimmed = absl::StripAsciiWhitespace(name);
      if (!trimmed.empty()) req.add_group_by(std::string(trimmed));
    }
    cmd.request = std::move(req);
  } else {
    absl::StatusOr<v1::InterpolateRequest> req = InterpolateRequest(in, *range);
    if (!req.ok()) return req.status();
    *req->mutable_selector() = *std::move(selector);
    cmd.request = *std::move(req);
  }
  return cmd;
}

int RunQuery(const Command& command, v1::QueryService::StubInterface& stub,
             absl::Duration timeout) {
  const Output& out = command.output;
  return std::visit(
      [&](const auto& req) -> int {
        using Request = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<Request, v1::ListSeriesRequest>) {
          return ListSeries(req, out, stub, timeout);
        } else if constexpr (std::is_same_v<Request, v1::ReadPointsRequest>) {
          return ReadPoints(req, out, stub, timeout);
        } else if constexpr (std::is_same_v<Request, v1::ReadAggregatesRequest>) {
          return ReadAggregates(req, out, stub, timeout);
        } else if constexpr (std::is_same_v<Request, v1::RollupRequest>) {
          return Rollup(req, out, stub, timeout);
        } else if constexpr (std::is_same_v<Request, v1::InterpolateRequest>) {
          return Interpolate(req, out, stub, timeout);
        } else {
          static_assert(std::is_same_v<Request, v1::SubscribeRequest>);
          std::fprintf(stderr, "tidemark: subscribe is a stream, not a query\n");
          return 2;
        }
      },
      command.request);
}

}  // namespace tidemark::cli
