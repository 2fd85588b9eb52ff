#include "common/series/series_key.h"

namespace tidemark::series {
namespace {

void AppendEscaped(std::string& out, absl::string_view s, absl::string_view special) {
  for (char c : s) {
    if (special.find(c) != absl::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
}

constexpr absl::string_view kNameSpecial = "\\\"{}=,";
constexpr absl::string_view kValueSpecial = "\\\"";

}  // namespace

ValueKind KindOf(v1::MeasureValue::ValueCase value_case) {
  switch (value_case) {
    case v1::MeasureValue::kBoolValue:
      return ValueKind::kBool;
    case v1::MeasureValue::kStringValue:
      return ValueKind::kString;
    default:
      return ValueKind::kNumeric;
  }
}

std::string CanonicalKey(absl::string_view measure_name,
                         const std::map<std::string, std::string>& sorted_dimensions,
                         ValueKind kind) {
  std::string key;
  key.reserve(measure_name.size() + 2 + sorted_dimensions.size() * 24);
  AppendEscaped(key, measure_name, kNameSpecial);
  key.push_back('{');
  bool first = true;
  for (const auto& [name, value] : sorted_dimensions) {
    if (!first) key.push_back(',');
    first = false;
    AppendEscaped(key, name, kNameSpecial);
    key += "=\"";
    AppendEscaped(key, value, kValueSpecial);
    key.push_back('"');
  }
  key.push_back('}');
  if (kind == ValueKind::kBool) key += ":bool";
  if (kind == ValueKind::kString) key += ":string";
  return key;
}

int64_t SeriesId(absl::string_view canonical_key) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : canonical_key) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return static_cast<int64_t>(hash);
}

}  // namespace tidemark::series
