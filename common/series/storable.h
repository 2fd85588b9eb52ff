#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::series {

class EventView;

/// The largest magnitude a stored number may have. A sum of up to 10^18 such values stays
/// finite, so neither the aggregator's double sums nor PostgreSQL's sum() over the points of
/// any window or rollup bucket can overflow to infinity (which PostgreSQL refuses).
inline constexpr double kMaxMagnitude = 1e290;

/// Why an event cannot be stored exactly as sent.
struct Problem {
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
  std::string message;
};

/// Whether `text` can be stored byte-exact in a PostgreSQL text or jsonb column: valid
/// UTF-8 (no surrogates, no overlong forms) without U+0000. Every string of an event (device
/// id, dimension names and values, measure names, string values) must be.
bool IsStorableText(absl::string_view text);

/// A name (a key, a measure or dimension name; valid UTF-8) as a message quotes it: at most
/// its first 64 bytes, cut at a character boundary, and its length when cut. Messages are
/// built before names are checked for length, and a rejection must stay small whatever was
/// sent: a stream keeps thousands of them, and an answer too large for the client's receive
/// limit would hide the events it acknowledged.
std::string QuotedName(absl::string_view name);

/// The one rule, shared by ingest, the aggregator and the writer, for what of an event can be
/// stored and windowed consistently: a device id, a time, an ingest stamp, storable text
/// everywhere, and finite numbers within kMaxMagnitude. Ingest applies further policy (sizes,
/// reserved names, retention); downstream services refuse what fails this rule identically,
/// so that no aggregate ever counts a point the store refused.
std::optional<Problem> CheckStorable(const v1::Event& event);
std::optional<Problem> CheckStorable(const EventView& event);

/// CheckStorable without the ingest stamp, for ingest itself, which stamps accepted events.
std::optional<Problem> CheckStorableContent(const v1::Event& event);
std::optional<Problem> CheckStorableContent(const EventView& event);

}  // namespace tidemark::series
