#include "services/archive/archive_core.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
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

}  // namespace

std::string HourPartition(int64_t time_us) {
  const absl::CivilHour hour =
      absl::ToCivilHour(absl::FromUnixMicros(time_us), absl::UTCTimeZone());
  return absl::StrFormat("year=%04d/month=%02d/day=%02d/hour=%02d", hour.year(), hour.month(),
                         hour.day(), hour.hour());
}

absl::StatusOr<int64_t> PartitionInstant(const series::EventView& event, PartitionTime by) {
  if (by == PartitionTime::kArrival) return event.ingest_time_us();
  return time::ToMicros(event.time(), event.time_unit());
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

namespace {

// The archive writes every event through here, so it is written by hand rather than through a
// JSON DOM: about half of the archive's CPU went to building and dumping one.

// `s` as a JSON string. Bytes that are not UTF-8 cannot be JSON text: each invalid sequence
// becomes U+FFFD (as nlohmann's replace handler does), never dropped silently.
void AppendString(std::string& out, absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
      }
      ++i;
      continue;
    }
    // Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    }
    if (valid) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  out += '"';
}

// The shortest text that reads back as the same double, always with a fraction or an exponent
// so that a reader (and a replay) sees a double, not an integer.
void AppendDouble(std::string& out, double d) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), d);
  const absl::string_view text(buf, r.ptr - buf);
  out.append(text.data(), text.size());
  if (text.find_first_of(".eEn") == absl::string_view::npos) out += ".0";
}

void AppendTwo(std::string& out, int v) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

// "2026-11-22T02:00:15.225000Z".
void AppendRfc3339(std::string& out, int64_t us) {
  const absl::Time t = absl::FromUnixMicros(us);
  const absl::CivilSecond c = absl::ToCivilSecond(t, absl::UTCTimeZone());
  const int64_t micros = ((us % 1'000'000) + 1'000'000) % 1'000'000;
  out += '"';
  if (c.year() >= 0 && c.year() <= 9999) {
    const int y = static_cast<int>(c.year());
    AppendTwo(out, y / 100);
    AppendTwo(out, y % 100);
  } else {
    absl::StrAppend(&out, c.year());
  }
  out += '-';
  AppendTwo(out, c.month());
  out += '-';
  AppendTwo(out, c.day());
  out += 'T';
  AppendTwo(out, c.hour());
  out += ':';
  AppendTwo(out, c.minute());
  out += ':';
  AppendTwo(out, c.second());
  out += '.';
  char frac[8];
  std::snprintf(frac, sizeof(frac), "%06ld", static_cast<long>(micros));
  out += frac;
  out += "Z\"";
}

void AppendKey(std::string& out, absl::string_view key) {
  AppendString(out, key);
  out += ':';
}

}  // namespace

std::optional<std::string> WhyNoJsonLine(const series::EventView& event) {
  for (const auto& [name, v] : event.measures()) {
    if (v.value_case() == v1::MeasureValue::kDoubleValue && !std::isfinite(v.double_value())) {
      return absl::StrCat("measure \"", name,
                          "\" is not a finite number, which a JSON line cannot hold");
    }
  }
  return std::nullopt;
}

std::string EventToJsonLine(const v1::Event& event, const Origin& origin) {
  series::EventView view;
  view.Assign(event);
  return EventToJsonLine(view, origin);
}

std::string EventToJsonLine(const series::EventView& event, const Origin& origin) {
  std::string out;
  out.reserve(256 + 48 * (event.measures().size() + event.dimensions().size()));
  out += '{';
  AppendKey(out, "device_id");
  AppendString(out, event.device_id());
  absl::StrAppend(&out, ",\"time\":", event.time(), ",\"time_unit\":\"",
                  UnitName(event.time_unit()), "\"");
  if (absl::StatusOr<int64_t> us = time::ToMicros(event.time(), event.time_unit()); us.ok()) {
    out += ",\"event_time\":";
    AppendRfc3339(out, *us);
  }
  // Keys in sorted order (as the view holds them), so that the same event always gives the
  // same bytes.
  out += ",\"dimensions\":{";
  for (size_t i = 0; i < event.dimensions().size(); ++i) {
    if (i > 0) out += ',';
    AppendKey(out, event.dimensions()[i].first);
    AppendString(out, event.dimensions()[i].second);
  }
  out += "},\"measures\":{";
  for (size_t i = 0; i < event.measures().size(); ++i) {
    if (i > 0) out += ',';
    const auto& [name, v] = event.measures()[i];
    AppendKey(out, name);
    switch (v.value_case()) {
      case v1::MeasureValue::kDoubleValue:
        AppendDouble(out, v.double_value());
        break;
      case v1::MeasureValue::kInt64Value:
        absl::StrAppend(&out, v.int64_value());
        break;
      case v1::MeasureValue::kBoolValue:
        out += v.bool_value() ? "true" : "false";
        break;
      case v1::MeasureValue::kStringValue:
        AppendString(out, v.string_value());
        break;
      default:
        out += "null";
    }
  }
  out += '}';
  if (event.has_version()) absl::StrAppend(&out, ",\"version\":", event.version());
  absl::StrAppend(&out, ",\"ingest_time_us\":", event.ingest_time_us(), ",\"ingest_time\":");
  AppendRfc3339(out, event.ingest_time_us());
  out += ",\"kafka\":{\"topic\":";
  AppendString(out, origin.topic);
  absl::StrAppend(&out, ",\"partition\":", origin.partition, ",\"offset\":", origin.offset, "}}");
  return out;
}

namespace {

// An integer as EventToJsonLine writes one. nlohmann's get<int64_t>() would wrap an integer
// beyond int64 and convert a double out of its range with undefined behaviour, so a line
// holding either is not an archived event.
std::optional<int64_t> Int64(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

}  // namespace

absl::StatusOr<v1::Event> EventFromJsonLine(absl::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  const auto not_int64 = [](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an archived event: ", field, " is not an int64 integer"));
  };
  try {
    v1::Event e;
    e.set_device_id(j.at("device_id").get<std::string>());
    const std::optional<int64_t> time = Int64(j.at("time"));
    if (!time) return not_int64("time");
    e.set_time(*time);
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
        const std::optional<int64_t> i = Int64(v);
        if (!i) return not_int64(absl::StrCat("measure \"", k, "\""));
        m.set_int64_value(*i);
      } else if (v.is_boolean()) {
        m.set_bool_value(v.get<bool>());
      } else if (v.is_string()) {
        m.set_string_value(v.get<std::string>());
      }
    }
    if (j.contains("version")) {
      const std::optional<int64_t> version = Int64(j.at("version"));
      if (!version) return not_int64("version");
      e.set_version(*version);
    }
    const std::optional<int64_t> ingest_time_us = Int64(j.at("ingest_time_us"));
    if (!ingest_time_us) return not_int64("ingest_time_us");
    e.set_ingest_time_us(*ingest_time_us);
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

// A z_stream holds pointers to itself: it stays where it was made, and ends with its owner
// (also when a moved-in GzipFile replaces it).
struct GzipFile::Compressor {
  explicit Compressor(int level) {
    // 15 window bits + 16: a gzip header and trailer rather than zlib's (as Gzip).
    deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  }
  ~Compressor() { deflateEnd(&z); }
  z_stream z{};
};

GzipFile::GzipFile(int level) : level_(level) {}
GzipFile::GzipFile(GzipFile&&) noexcept = default;
GzipFile& GzipFile::operator=(GzipFile&&) noexcept = default;
GzipFile::~GzipFile() = default;

void GzipFile::Append(absl::string_view text) {
  text_.append(text.data(), text.size());
  if (text_.size() >= (compressor_ ? kPieceBytes : kCompressFromBytes)) Compress(false);
}

std::string GzipFile::Finish() {
  if (!compressor_) return Gzip(text_, level_);
  Compress(true);
  return std::move(gzip_);
}

void GzipFile::Compress(bool finish) {
  if (!compressor_) compressor_ = std::make_unique<Compressor>(level_);
  z_stream& z = compressor_->z;
  z.next_in = reinterpret_cast<Bytef*>(text_.data());
  z.avail_in = static_cast<uInt>(text_.size());
  // All the input is taken on each call; output goes out as it is made.
  const int flush = finish ? Z_FINISH : Z_NO_FLUSH;
  char buf[1 << 16];
  int rc = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = deflate(&z, flush);
    gzip_.append(buf, sizeof(buf) - z.avail_out);
  } while (rc == Z_OK && (z.avail_out == 0 || finish));
  // The first piece grew text_ to kCompressFromBytes; the next ones need far less.
  if (text_.capacity() > 2 * kPieceBytes) {
    std::string().swap(text_);
  } else {
    text_.clear();
  }
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
    if (b.committed) all.back()["committed"] = true;
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
      b.committed = e.value("committed", false);
    }
    return batches;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("pending batch record: ", e.what()));
  }
}

std::string PendingPath(absl::string_view topic, int32_t partition) {
  return absl::StrCat("_pending/", topic, "-", partition, ".json");
}

int64_t ResumeOffsetOf(const std::vector<PendingBatch>& batches) {
  int64_t after_committed = -1, lowest_uncommitted = INT64_MAX;
  for (const PendingBatch& b : batches) {
    if (b.committed) {
      after_committed = std::max(after_committed, b.last_offset + 1);
    } else {
      lowest_uncommitted = std::min(lowest_uncommitted, b.first_offset);
    }
  }
  return after_committed >= 0 ? after_committed : lowest_uncommitted;
}

absl::Status CheckStartWithoutCommit(absl::string_view topic, int32_t partition,
                                     int64_t resume_offset, int64_t earliest_offset) {
  if (resume_offset == INT64_MAX || resume_offset == earliest_offset) {
    return absl::OkStatus();
  }
  const std::string where = absl::StrCat("partition ", topic, "/", partition,
                                         " has no committed offset but the lake's record of "
                                         "it resumes archiving at offset ",
                                         resume_offset);
  if (earliest_offset < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        where,
        ", and Kafka's earliest offset of it could not be read, so whether the group's "
        "offsets were lost cannot be told; restart the archive to ask again"));
  }
  if (resume_offset > earliest_offset) {
    return absl::FailedPreconditionError(absl::StrCat(
        where,
        ": this consumer group archived the records before it, and its offsets were "
        "lost (expired after offsets.retention.minutes, or deleted). Starting from the "
        "earliest offset (",
        earliest_offset, ") would archive them twice; set the group's offset of this partition to ",
        resume_offset, " to resume exactly once"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      where, ", and Kafka no longer holds offsets ", resume_offset, " to ", earliest_offset - 1,
      ": they were not archived, or were archived by a batch whose commit is not known, and "
      "redoing it would lose them. Check the lake's files of this partition from offset ",
      resume_offset, ", then set the group's offset (to ", earliest_offset,
      " to archive what Kafka holds)"));
}

absl::StatusOr<Resume> DecideResume(const PendingBatch& batch, int64_t committed_offset) {
  if (committed_offset > batch.last_offset) return Resume::kKeepFiles;
  if (committed_offset <= batch.first_offset) return Resume::kDeleteFiles;
  return absl::FailedPreconditionError(absl::StrCat(
      "partition ", batch.topic, "/", batch.partition, " is committed at offset ", committed_offset,
      ", inside the archived batch ", batch.first_offset, "-", batch.last_offset,
      ": the group's offsets were moved by hand; move them to a batch "
      "boundary (",
      batch.first_offset, " or ", batch.last_offset + 1, ")"));
}

}  // namespace tidemark::archive
