// tidemark: look at series and points through the query API without writing code.
//
//   tidemark series [--measure=M] [--where=k=v,k!=v] [--limit=N]
//   tidemark points --measure=M [--where=...] [--since=1h | --start=RFC3339 --end=RFC3339]
//                   [--limit=N] [--format=table|csv|json]
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/config/config.h"
#include "grpcpp/grpcpp.h"
#include "tidemark/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, query, "127.0.0.1:50052", "Query service address");
ABSL_FLAG(std::string, measure, "", "Measure name");
ABSL_FLAG(std::string, where, "", "Dimension matchers: name=value or name!=value, comma separated");
ABSL_FLAG(std::string, since, "1h", "Points from this long ago until now");
ABSL_FLAG(std::string, start, "", "Range start, RFC 3339 (overrides --since)");
ABSL_FLAG(std::string, end, "", "Range end, RFC 3339 (default: now)");
ABSL_FLAG(int64_t, limit, 100, "Most rows to print (0: all)");
ABSL_FLAG(std::string, format, "table", "table, csv or json");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each call");

namespace {

using namespace tidemark;

absl::StatusOr<v1::SeriesSelector> Selector() {
  v1::SeriesSelector sel;
  sel.set_measure_name(absl::GetFlag(FLAGS_measure));
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_where), ',', absl::SkipEmpty())) {
    v1::DimensionMatcher* matcher = sel.add_matchers();
    std::pair<std::string, std::string> kv = absl::StrSplit(m, absl::MaxSplits("!=", 1));
    if (m.find("!=") != absl::string_view::npos) {
      matcher->set_op(v1::DimensionMatcher::OP_NOT_EQUAL);
    } else {
      kv = absl::StrSplit(m, absl::MaxSplits('=', 1));
      if (m.find('=') == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("--where: \"", m, "\" is not name=value or name!=value"));
      }
    }
    matcher->set_name(kv.first);
    matcher->set_value(kv.second);
  }
  return sel;
}

std::string FormatValue(const v1::MeasureValue& v) {
  switch (v.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      return absl::StrCat(v.double_value());
    case v1::MeasureValue::kInt64Value:
      return absl::StrCat(v.int64_value());
    case v1::MeasureValue::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case v1::MeasureValue::kStringValue:
      return v.string_value();
    default:
      return "";
  }
}

std::string FormatTime(int64_t us) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  return ctx;
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "tidemark: %s (%d)\n", s.error_message().c_str(),
               static_cast<int>(s.error_code()));
  return 1;
}

int ListSeries(v1::QueryService::Stub& stub, const v1::SeriesSelector& sel) {
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  const std::string format = absl::GetFlag(FLAGS_format);
  v1::ListSeriesRequest req;
  *req.mutable_selector() = sel;
  int64_t printed = 0;
  if (format == "csv") std::printf("series_id,measure_name,canonical_key\n");
  do {
    v1::ListSeriesResponse resp;
    if (grpc::Status s = stub.ListSeries(Context().get(), req, &resp); !s.ok()) return Fail(s);
    for (const v1::Series& series : resp.series()) {
      if (limit > 0 && printed >= limit) return 0;
      if (format == "json") {
        std::printf("{\"series_id\":%ld,\"canonical_key\":\"%s\"}\n", series.series_id(),
                    series.canonical_key().c_str());
      } else if (format == "csv") {
        std::printf("%ld,%s,\"%s\"\n", series.series_id(), series.measure_name().c_str(),
                    series.canonical_key().c_str());
      } else {
        std::printf("%20ld  %s\n", series.series_id(), series.canonical_key().c_str());
      }
      ++printed;
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  if (format == "table") std::fprintf(stderr, "%ld series\n", printed);
  return 0;
}

int ReadPoints(v1::QueryService::Stub& stub, const v1::SeriesSelector& sel) {
  v1::ReadPointsRequest req;
  *req.mutable_selector() = sel;
  absl::Time end = absl::Now(), start;
  std::string err;
  if (!absl::GetFlag(FLAGS_end).empty() &&
      !absl::ParseTime(absl::RFC3339_full, absl::GetFlag(FLAGS_end), &end, &err)) {
    std::fprintf(stderr, "tidemark: --end: %s\n", err.c_str());
    return 2;
  }
  if (!absl::GetFlag(FLAGS_start).empty()) {
    if (!absl::ParseTime(absl::RFC3339_full, absl::GetFlag(FLAGS_start), &start, &err)) {
      std::fprintf(stderr, "tidemark: --start: %s\n", err.c_str());
      return 2;
    }
  } else {
    absl::Duration since;
    if (!absl::ParseDuration(absl::GetFlag(FLAGS_since), &since)) {
      std::fprintf(stderr, "tidemark: --since: expected a duration such as 15m or 2h\n");
      return 2;
    }
    start = end - since;
  }
  req.mutable_range()->set_start_us(absl::ToUnixMicros(start));
  // One microsecond past `end`, so that a point at the very end is included.
  req.mutable_range()->set_end_us(absl::ToUnixMicros(end) + 1);
  req.set_limit(absl::GetFlag(FLAGS_limit));
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format == "csv") std::printf("time,series_id,measure_name,value,version\n");
  int64_t printed = 0;
  do {
    v1::ReadPointsResponse resp;
    if (grpc::Status s = stub.ReadPoints(Context().get(), req, &resp); !s.ok()) return Fail(s);
    for (const v1::SeriesPoints& sp : resp.series()) {
      if (format == "table") std::printf("# %s\n", sp.series().canonical_key().c_str());
      for (const v1::Point& p : sp.points()) {
        if (format == "json") {
          std::printf("{\"time\":\"%s\",\"series_id\":%ld,\"value\":\"%s\",\"version\":%ld}\n",
                      FormatTime(p.time_us()).c_str(), sp.series().series_id(),
                      FormatValue(p.value()).c_str(), p.version());
        } else if (format == "csv") {
          std::printf("%s,%ld,%s,%s,%ld\n", FormatTime(p.time_us()).c_str(),
                      sp.series().series_id(), sp.series().measure_name().c_str(),
                      FormatValue(p.value()).c_str(), p.version());
        } else {
          std::printf("  %s  %16s  v%ld\n", FormatTime(p.time_us()).c_str(),
                      FormatValue(p.value()).c_str(), p.version());
        }
        ++printed;
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  if (format == "table") std::fprintf(stderr, "%ld points\n", printed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = config::ParseFlagsAndEnvironment(
      argc, argv,
      "tidemark series|points [--measure=M] [--where=k=v,k!=v] [--since=1h] [--limit=N] "
      "[--format=table|csv|json]");
  if (!args.ok()) {
    std::fprintf(stderr, "tidemark: %s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  if (args->size() != 1 || ((*args)[0] != "series" && (*args)[0] != "points")) {
    std::fprintf(stderr, "usage: tidemark series|points [flags]; tidemark --help lists them\n");
    return 2;
  }
  absl::StatusOr<v1::SeriesSelector> sel = Selector();
  if (!sel.ok()) {
    std::fprintf(stderr, "tidemark: %s\n", std::string(sel.status().message()).c_str());
    return 2;
  }
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_query), grpc::InsecureChannelCredentials());
  auto stub = v1::QueryService::NewStub(channel);
  return (*args)[0] == "series" ? ListSeries(*stub, *sel) : ReadPoints(*stub, *sel);
}
