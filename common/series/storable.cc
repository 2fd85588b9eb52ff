#include "common/series/storable.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/series/event_view.h"
#include "common/time/time_units.h"

namespace tidemark::series {
namespace {

Problem Bad(v1::RejectReason reason, std::string message) {
  return Problem{reason, std::move(message)};
}

std::optional<Problem> CheckText(absl::string_view what, absl::string_view text) {
  if (IsStorableText(text)) return std::nullopt;
  return Bad(v1::REJECT_REASON_INVALID_TEXT,
             absl::StrCat(what, " is not valid UTF-8 or contains a NUL character"));
}

// One rule for both forms of an event: the message, and the view the consumers of
// tidemark.raw decode records into. They have the same accessors.
template <typename EventForm>
std::optional<Problem> CheckContent(const EventForm& event) {
  if (event.device_id().empty()) {
    return Bad(v1::REJECT_REASON_MISSING_DEVICE_ID, "device_id is missing or empty");
  }
  if (event.time() == 0) return Bad(v1::REJECT_REASON_MISSING_TIME, "time is missing");
  if (auto p = CheckText("device_id", event.device_id())) return p;
  for (const auto& [name, value] : event.dimensions()) {
    if (auto p = CheckText("a dimension name", name)) return p;
    // The message is built only for a bad value: this runs for every dimension of every event.
    if (!IsStorableText(value)) {
      return CheckText(absl::StrCat("the value of dimension ", QuotedName(name)), value);
    }
  }
  for (const auto& [name, value] : event.measures()) {
    if (auto p = CheckText("a measure name", name)) return p;
    switch (value.value_case()) {
      case v1::MeasureValue::kDoubleValue:
        if (!std::isfinite(value.double_value())) {
          return Bad(v1::REJECT_REASON_NON_FINITE_NUMBER,
                     absl::StrCat("measure ", QuotedName(name), " is not a finite number"));
        }
        if (std::fabs(value.double_value()) > kMaxMagnitude) {
          return Bad(v1::REJECT_REASON_NUMBER_OUT_OF_RANGE,
                     absl::StrCat("measure ", QuotedName(name), " is beyond +/-1e290"));
        }
        break;
      case v1::MeasureValue::kStringValue:
        if (!IsStorableText(value.string_value())) {
          return CheckText(absl::StrCat("string measure ", QuotedName(name)), value.string_value());
        }
        break;
      case v1::MeasureValue::kInt64Value:
      case v1::MeasureValue::kBoolValue:
        break;
      case v1::MeasureValue::VALUE_NOT_SET:
        return Bad(v1::REJECT_REASON_NO_MEASURES,
                   absl::StrCat("measure ", QuotedName(name), " has no value"));
    }
  }
  if (event.measures().empty()) return Bad(v1::REJECT_REASON_NO_MEASURES, "event has no measures");
  return std::nullopt;
}

template <typename EventForm>
std::optional<Problem> CheckStamped(const EventForm& event) {
  if (auto p = CheckContent(event)) return p;
  if (event.ingest_time_us() <= 0) {
    return Bad(v1::REJECT_REASON_UNDECODABLE, "event has no ingest time: it did not pass ingest");
  }
  if (event.ingest_time_us() > time::kMaxTimeMagnitudeUs) {
    return Bad(v1::REJECT_REASON_UNDECODABLE, "ingest time is not a time: it did not pass ingest");
  }
  return std::nullopt;
}

}  // namespace

std::string QuotedName(absl::string_view name) {
  constexpr size_t kMaxQuotedBytes = 64;
  if (name.size() <= kMaxQuotedBytes) return absl::StrCat("\"", name, "\"");
  size_t n = kMaxQuotedBytes;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  return absl::StrCat("\"", name.substr(0, n), "...\" (", name.size(), " bytes)");
}

bool IsStorableText(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte or 0xF8..0xFF where a sequence must start
    }
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;  // overlong, beyond Unicode, or a UTF-16 surrogate
    }
    i += len;
  }
  return true;
}

std::optional<Problem> CheckStorable(const v1::Event& event) { return CheckStamped(event); }

std::optional<Problem> CheckStorable(const EventView& event) { return CheckStamped(event); }

std::optional<Problem> CheckStorableContent(const v1::Event& event) { return CheckContent(event); }

std::optional<Problem> CheckStorableContent(const EventView& event) { return CheckContent(event); }

}  // namespace tidemark::series
