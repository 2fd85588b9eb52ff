#include "services/archive/archive_core.h"

#include <zlib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/time/time_units.h"
#include "nlohmann/json.hpp"

namespace tidemark::archive {
namespace {

using nlohmann::json;

const char* UnitName(v1::TimeUnit unit) {
  switch (unit) {
    case v1::TIME_UNIT_SECONDS:
      return "SECONDS";
    case v1::TIME_UNIT_MICROSECONDS:
      return "MICROSECONDS";
    case v1::TIME_UNIT_NANOSECONDS:
      return "NANOSECONDS";
    default:
      return "MILLISECONDS";
  }
}

std::string Rfc3339(int64_t us) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

}  // namespace

std::string HourPartition(int64_t time_us) {
  const absl::CivilHour hour = absl::ToCivilHour(absl::FromUnixMicros(time_us), absl::UTCTimeZone());
  return absl::StrFormat("year=%04d/month=%02d/day=%02d/hour=%02d", hour.year(), hour.month(),
                         hour.day(), hour.hour());
}

absl::StatusOr<int64_t> PartitionInstant(const v1::Event& event, PartitionTime by) {
  if (by == PartitionTime::kArrival) return event.ingest_time_us();
  return time::ToMicros(event.time(), event.time_unit());
}

std::string FileName(absl::string_view topic, int32_t partition, int64_t first, int64_t last) {
  return absl::StrFormat("%s-%d-%012d-%012d.jsonl.gz", topic, partition, first, last);
}

std::optional<FileRange> ParseFileName(absl::string_view name) {
  if (!absl::ConsumeSuffix(&name, ".jsonl.gz")) return std::nullopt;
  FileRange r;
  const size_t last_dash = name.rfind('-');
  if (last_dash == absl::string_view::npos) return std::nullopt;
  const size_t first_dash = name.rfind('-', last_dash - 1);
  if (first_dash == absl::string_view::npos || first_dash == 0) return std::nullopt;
  const size_t partition_dash = name.rfind('-', first_dash - 1);
  if (partition_dash == absl::string_view::npos || partition_dash == 0) return std::nullopt;
  if (!absl::SimpleAtoi(name.substr(last_dash + 1), &r.last_offset) ||
      !absl::SimpleAtoi(name.substr(first_dash + 1, last_dash - first_dash - 1), &r.first_offset) ||
      !absl::SimpleAtoi(name.substr(partition_dash + 1, first_dash - partition_dash - 1),
                        &r.partition)) {
    return std::nullopt;
  }
  r.topic = std::string(name.substr(0, partition_dash));
  return r;
}

std::string EventToJsonLine(const v1::Event& event, const Origin& origin) {
  json j;
  j["device_id"] = event.device_id();
  j["time"] = event.time();
  j["time_unit"] = UnitName(event.time_unit());
  if (absl::StatusOr<int64_t> us = time::ToMicros(event.time(), event.time_unit()); us.ok()) {
    j["event_time"] = Rfc3339(*us);
  }
  j["dimensions"] = json::object();
  for (const auto& [k, v] : event.dimensions()) j["dimensions"][k] = v;
  j["measures"] = json::object();
  for (const auto& [k, v] : event.measures()) {
    switch (v.value_case()) {
      case v1::MeasureValue::kDoubleValue:
        j["measures"][k] = v.double_value();
        break;
      case v1::MeasureValue::kInt64Value:
        j["measures"][k] = v.int64_value();
        break;
      case v1::MeasureValue::kBoolValue:
        j["measures"][k] = v.bool_value();
        break;
      case v1::MeasureValue::kStringValue:
        j["measures"][k] = v.string_value();
        break;
      default:
        j["measures"][k] = nullptr;
    }
  }
  if (event.has_version()) j["version"] = event.version();
  j["ingest_time_us"] = event.ingest_time_us();
  j["ingest_time"] = Rfc3339(event.ingest_time_us());
  j["kafka"] = {{"topic", origin.topic}, {"partition", origin.partition}, {"offset", origin.offset}};
  // Bytes that are not UTF-8 cannot be JSON text; they are replaced (U+FFFD), not dropped.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<v1::Event> EventFromJsonLine(absl::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  try {
    v1::Event e;
    e.set_device_id(j.at("device_id").get<std::string>());
    e.set_time(j.at("time").get<int64_t>());
    const std::string unit = j.at("time_unit").get<std::string>();
    e.set_time_unit(unit == "SECONDS"        ? v1::TIME_UNIT_SECONDS
                    : unit == "MICROSECONDS" ? v1::TIME_UNIT_MICROSECONDS
                    : unit == "NANOSECONDS"  ? v1::TIME_UNIT_NANOSECONDS
                                             : v1::TIME_UNIT_MILLISECONDS);
    for (const auto& [k, v] : j.at("dimensions").items()) {
      (*e.mutable_dimensions())[k] = v.get<std::string>();
    }
    for (const auto& [k, v] : j.at("measures").items()) {
      v1::MeasureValue& m = (*e.mutable_measures())[k];
      if (v.is_number_float()) {
        m.set_double_value(v.get<double>());
      } else if (v.is_number_integer()) {
        m.set_int64_value(v.get<int64_t>());
      } else if (v.is_boolean()) {
        m.set_bool_value(v.get<bool>());
      } else if (v.is_string()) {
        m.set_string_value(v.get<std::string>());
      }
    }
    if (j.contains("version")) e.set_version(j.at("version").get<int64_t>());
    e.set_ingest_time_us(j.at("ingest_time_us").get<int64_t>());
    return e;
  } catch (const json::exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat("not an archived event: ", ex.what()));
  }
}

std::string Gzip(absl::string_view data, int level) {
  z_stream z{};
  // 15 window bits + 16: a gzip header and trailer rather than zlib's.
  deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

absl::StatusOr<std::string> Gunzip(absl::string_view data) {
  z_stream z{};
  // 15 + 32: detect gzip or zlib; concatenated gzip members are read one after another.
  if (inflateInit2(&z, 15 + 32) != Z_OK) return absl::InternalError("inflateInit2 failed");
  std::string out;
  char buf[1 << 16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      inflateReset(&z);
      continue;
    }
    if (rc != Z_OK) break;
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::DataLossError("the gzip data is truncated or corrupt");
  return out;
}

std::string EncodePendingBatches(const std::vector<PendingBatch>& batches) {
  json all = json::array();
  for (const PendingBatch& b : batches) {
    all.push_back({{"topic", b.topic},
                   {"partition", b.partition},
                   {"first_offset", b.first_offset},
                   {"last_offset", b.last_offset},
                   {"files", b.files}});
  }
  return all.dump();
}

absl::StatusOr<std::vector<PendingBatch>> DecodePendingBatches(absl::string_view text) {
  const json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    return absl::DataLossError("pending batch record is not a JSON array");
  }
  try {
    std::vector<PendingBatch> batches;
    for (const json& e : j) {
      PendingBatch& b = batches.emplace_back();
      b.topic = e.at("topic").get<std::string>();
      b.partition = e.at("partition").get<int32_t>();
      b.first_offset = e.at("first_offset").get<int64_t>();
      b.last_offset = e.at("last_offset").get<int64_t>();
      b.files = e.at("files").get<std::vector<std::string>>();
    }
    return batches;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("pending batch record: ", e.what()));
  }
}

std::string PendingPath(absl::string_view topic, int32_t partition) {
  return absl::StrCat("_pending/", topic, "-", partition, ".json");
}

absl::StatusOr<Resume> DecideResume(const PendingBatch& batch, int64_t committed_offset) {
  if (committed_offset > batch.last_offset) return Resume::kKeepFiles;
  if (committed_offset <= batch.first_offset) return Resume::kDeleteFiles;
  return absl::FailedPreconditionError(absl::StrCat(
      "partition ", batch.topic, "/", batch.partition, " is committed at offset ",
      committed_offset, ", inside the archived batch ", batch.first_offset, "-",
      batch.last_offset, ": the group's offsets were moved by hand; move them to a batch "
      "boundary (", batch.first_offset, " or ", batch.last_offset + 1, ")"));
}

}  // namespace tidemark::archive
