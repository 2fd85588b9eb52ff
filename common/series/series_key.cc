#include "common/series/series_key.h"

namespace tidemark::series {
namespace {

void AppendEscaped(std::string& out, absl::string_view s) {
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
}

}  // namespace

std::string CanonicalKey(absl::string_view measure_name,
                         const std::map<std::string, std::string>& sorted_dimensions) {
  std::string key;
  key.reserve(measure_name.size() + 2 + sorted_dimensions.size() * 24);
  AppendEscaped(key, measure_name);
  key.push_back('{');
  bool first = true;
  for (const auto& [name, value] : sorted_dimensions) {
    if (!first) key.push_back(',');
    first = false;
    AppendEscaped(key, name);
    key += "=\"";
    AppendEscaped(key, value);
    key.push_back('"');
  }
  key.push_back('}');
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
