#pragma once

// What every fuzz target shares: a property check that stops the run with a report, and event
// equality that treats NaN as equal to itself (a round trip must keep a NaN a NaN).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::fuzz {

/// A property of the code under test, not an assertion about the fuzzer: when it does not hold,
/// the input is a finding. abort() makes libFuzzer save the input as crash-<sha1>.
#define TIDEMARK_FUZZ_CHECK(cond, what)                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "property violated at %s:%d: %s\n  (%s)\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                                    \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

/// The wall clock the targets run at, so that seeds stay inside the retention and future
/// windows however long after they were made the corpus is replayed: 2026-11-22T00:00:00Z.
inline constexpr int64_t kNowUs = 1'795'305'600'000'000;

/// Field-by-field equality of two messages, NaN equal to NaN, maps compared as maps.
inline bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b,
                        std::string* diff = nullptr) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  if (diff != nullptr) differencer.ReportDifferencesToString(diff);
  return differencer.Compare(a, b);
}

/// A short printable form of an event for property reports.
inline std::string Describe(const google::protobuf::Message& m) {
  std::string s = m.ShortDebugString();
  if (s.size() > 2000) s.resize(2000);
  return s;
}

}  // namespace tidemark::fuzz
