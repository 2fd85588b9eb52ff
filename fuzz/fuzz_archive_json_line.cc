// The archive's JSON lines: what `archive replay` reads back from the lake into tidemark.raw.
// Input: one byte choosing the mode, then either a line as found in a lake file, or a
// serialized event as found in tidemark.raw.
//
// Properties: a line that reads as an event is written again as a line reading back as the
// same event, byte for byte the same line each time; every event with finite numbers and a
// known time unit that consumers can decode from tidemark.raw is archived as a line that reads
// back as that event;
// and what replay reads back is an event consumers can decode.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_support.h"
#include "nlohmann/json.hpp"
#include "services/archive/archive_core.h"

namespace tidemark::fuzz {
namespace {

const archive::Origin kOrigin{"tidemark.raw", 5, 123456};

// What the archive keeps of a raw event: everything but the replay mark and fields this build
// does not know (a newer producer's), with the unit written out (unspecified means
// milliseconds, event.proto).
v1::Event Archived(v1::Event e) {
  if (e.time_unit() == v1::TIME_UNIT_UNSPECIFIED) e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  e.clear_replayed();
  e.DiscardUnknownFields();
  return e;
}

// What replay can give back as it was: finite numbers and a time unit this build knows (an
// unknown one is archived as the default, milliseconds; ingest never accepts one).
bool Archivable(const v1::Event& e) {
  if (!v1::TimeUnit_IsValid(e.time_unit())) return false;
  for (const auto& [name, value] : e.measures()) {
    if (value.value_case() == v1::MeasureValue::kDoubleValue &&
        !std::isfinite(value.double_value())) {
      return false;
    }
  }
  return true;
}

void CheckRoundTrip(const v1::Event& event, absl::string_view source) {
  const std::string line = archive::EventToJsonLine(event, kOrigin);
  TIDEMARK_FUZZ_CHECK(line.find('\n') == std::string::npos, "a JSON line is one line");
  TIDEMARK_FUZZ_CHECK(nlohmann::json::accept(line), "a JSON line is JSON: " + line);
  absl::StatusOr<v1::Event> back = archive::EventFromJsonLine(line);
  TIDEMARK_FUZZ_CHECK(back.ok(), absl::StrCat("a written line reads back: ",
                                              back.status().ToString(), " ", line));
  std::string diff;
  TIDEMARK_FUZZ_CHECK(SameMessage(*back, Archived(event), &diff),
                      absl::StrCat("the line reads back as the event: ", diff, " ", line,
                                   " from ", absl::CHexEscape(source)));
  TIDEMARK_FUZZ_CHECK(archive::EventToJsonLine(*back, kOrigin) == line,
                      "the same event gives the same line");
  std::string wire;
  v1::Event decoded;
  TIDEMARK_FUZZ_CHECK(back->SerializeToString(&wire) && decoded.ParseFromString(wire),
                      "a replayed event decodes as consumers decode it");
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  if (size < 1) return -1;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    absl::StatusOr<v1::Event> event = archive::EventFromJsonLine(rest);
    if (!event.ok()) {
      TIDEMARK_FUZZ_CHECK(event.status().code() == absl::StatusCode::kInvalidArgument,
                          "a line that is not an archived event is INVALID_ARGUMENT");
      return 0;
    }
    if (fuzz::Archivable(*event)) fuzz::CheckRoundTrip(*event, rest);
    return 0;
  }
  v1::Event event;
  if (!event.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return -1;
  if (!fuzz::Archivable(event)) return 0;
  fuzz::CheckRoundTrip(event, rest);
  return 0;
}
