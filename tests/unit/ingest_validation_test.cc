#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "common/series/storable.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/ingest/ingest_core.h"
#include "tests/support/random_edits.h"

namespace tidemark::ingest {
namespace {

constexpr int64_t kNowUs = 1'800'000'000'000'000;

v1::Event Valid() {
  v1::Event e;
  e.set_device_id("d1");
  e.set_time(kNowUs / 1000);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(21.5);
  return e;
}

v1::RejectReason ReasonFor(const v1::Event& e, const ValidationLimits& limits = {}) {
  std::optional<Rejection> r = ValidateEvent(e, kNowUs, limits);
  return r ? r->reason : v1::REJECT_REASON_UNSPECIFIED;
}

TEST(Validation, AcceptsAValidEvent) {
  EXPECT_EQ(ReasonFor(Valid()), v1::REJECT_REASON_UNSPECIFIED);
}

// Messages quote at most the start of a name: the rules on content run before the length
// check, and a stream keeps up to 10,000 rejections for its whole life.
TEST(Validation, MessagesQuoteLongNamesInPart) {
  const std::string name = "\u00e9" + std::string(60'000, 'n');  // a 2-byte character first
  for (int field = 0; field < 3; ++field) {
    v1::Event e = Valid();
    if (field == 0) (*e.mutable_measures())[name].set_double_value(std::nan(""));
    if (field == 1) (*e.mutable_measures())[name].set_double_value(1e300);
    if (field == 2) (*e.mutable_dimensions())[name] = std::string("\xff", 1);
    const std::optional<Rejection> r = ValidateEvent(e, kNowUs, {});
    ASSERT_TRUE(r.has_value()) << field;
    EXPECT_LT(r->message.size(), 200u) << field;
    EXPECT_NE(r->message.find("\"\u00e9nnn"), std::string::npos) << r->message.substr(0, 200);
    EXPECT_NE(r->message.find("(60002 bytes)"), std::string::npos) << r->message.substr(0, 200);
  }
  // A name cut inside a character is cut before it.
  v1::Event e = Valid();
  (*e.mutable_measures())[std::string(63, 'a') + "\u00e9" + "zz"].clear_value();
  const std::optional<Rejection> r = ValidateEvent(e, kNowUs, {});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, v1::REJECT_REASON_NO_MEASURES);
  EXPECT_NE(r->message.find("\"" + std::string(63, 'a') + "...\""), std::string::npos)
      << r->message;
}

TEST(Validation, EachRejectionReason) {
  v1::Event e = Valid();
  e.clear_device_id();
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_MISSING_DEVICE_ID);

  e = Valid();
  e.clear_time();
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_MISSING_TIME);

  e = Valid();
  e.set_time((kNowUs - absl::ToInt64Microseconds(absl::Hours(24 * 8))) / 1000);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_TIME_BEFORE_RETENTION);

  e = Valid();
  e.set_time((kNowUs + absl::ToInt64Microseconds(absl::Hours(25))) / 1000);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE);

  // Times no unit can bring within Tidemark's range: too far back, or too far ahead.
  e = Valid();
  e.set_time(INT64_MIN + 1);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_TIME_BEFORE_RETENTION);
  e.set_time(INT64_MAX);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE);
  // A unit this version does not know says so, rather than "too far ahead".
  e = Valid();
  e.set_time_unit(static_cast<v1::TimeUnit>(7));
  std::optional<Rejection> unknown_unit = ValidateEvent(e, kNowUs, {});
  ASSERT_TRUE(unknown_unit.has_value());
  EXPECT_EQ(unknown_unit->reason, v1::REJECT_REASON_UNDECODABLE);
  EXPECT_NE(unknown_unit->message.find("time_unit 7"), std::string::npos) << unknown_unit->message;

  e = Valid();
  e.clear_measures();
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NO_MEASURES);

  e = Valid();
  (*e.mutable_measures())["temperature"].set_double_value(std::numeric_limits<double>::infinity());
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NON_FINITE_NUMBER);
  (*e.mutable_measures())["temperature"].set_double_value(std::nan(""));
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NON_FINITE_NUMBER);

  e = Valid();
  (*e.mutable_measures())[std::string(300, 'm')].set_int64_value(1);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NAME_TOO_LONG);

  e = Valid();
  (*e.mutable_dimensions())["measure_name"] = "x";
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_RESERVED_NAME);
  e = Valid();
  (*e.mutable_dimensions())["device_id"] = "other";
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_RESERVED_NAME);

  ValidationLimits small;
  small.max_dimensions = 2;
  small.max_measures = 1;
  e = Valid();
  for (int i = 0; i < 3; ++i) (*e.mutable_dimensions())["d" + std::to_string(i)] = "v";
  EXPECT_EQ(ReasonFor(e, small), v1::REJECT_REASON_TOO_MANY_DIMENSIONS);
  e = Valid();
  (*e.mutable_measures())["other"].set_bool_value(true);
  EXPECT_EQ(ReasonFor(e, small), v1::REJECT_REASON_TOO_MANY_MEASURES);

  e = Valid();
  (*e.mutable_measures())["blob"].set_string_value(std::string(70 * 1024, 'x'));
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_PAYLOAD_TOO_LARGE);

  e = Valid();
  (*e.mutable_measures())[""].set_int64_value(1);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_NAME);
}

TEST(Validation, FutureWithinCorrectableRangeIsAccepted) {
  v1::Event e = Valid();
  e.set_time((kNowUs + absl::ToInt64Microseconds(absl::Hours(2))) / 1000);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_UNSPECIFIED) << "corrected downstream, not rejected";
}

TEST(Validation, TextPostgreSQLCannotStoreIsRejectedWherePostgreSQLWouldRefuseIt) {
  const std::string nul("a\0b", 3);
  v1::Event e = Valid();
  e.set_device_id(nul);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  e = Valid();
  (*e.mutable_dimensions())["site"] = nul;
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  e = Valid();
  (*e.mutable_dimensions())[nul] = "x";
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  e = Valid();
  (*e.mutable_measures())["note"].set_string_value(nul);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  e = Valid();
  (*e.mutable_measures())[nul].set_double_value(1);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  e = Valid();
  (*e.mutable_measures())["note"].set_string_value("\xed\xa0\x80");  // a UTF-16 surrogate
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_INVALID_TEXT);
  // Everything else of Unicode, quotes and SQL included, is stored byte-exact.
  e = Valid();
  (*e.mutable_measures())["note"].set_string_value(
      "'); DROP TABLE points; -- \xf0\x9f\x8c\x8a \t\n");
  (*e.mutable_dimensions())["na{me}=\",x"] = "v\\\"";
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_UNSPECIFIED);
}

TEST(Validation, NumbersWhoseSumsCouldOverflowAreRejected) {
  v1::Event e = Valid();
  (*e.mutable_measures())["temperature"].set_double_value(1e300);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NUMBER_OUT_OF_RANGE);
  (*e.mutable_measures())["temperature"].set_double_value(-1e291);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_NUMBER_OUT_OF_RANGE);
  (*e.mutable_measures())["temperature"].set_double_value(1e290);
  EXPECT_EQ(ReasonFor(e), v1::REJECT_REASON_UNSPECIFIED);
}

TEST(Validation, MessagesQuoteNamesAsValidUtf8) {
  v1::Event e = Valid();
  // 31 ASCII bytes, then a 3-byte character across the 32-byte cut.
  const std::string name = std::string(31, 'a') + "\xe2\x82\xac" + std::string(300, 'b');
  (*e.mutable_measures())[name].set_double_value(1);
  std::optional<Rejection> r = ValidateEvent(e, kNowUs, {});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, v1::REJECT_REASON_NAME_TOO_LONG);
  EXPECT_TRUE(series::IsStorableText(r->message)) << r->message;
}

TEST(PrepareEvents, StampsIngestTimeAndIndexesRejections) {
  google::protobuf::RepeatedPtrField<v1::Event> events;
  *events.Add() = Valid();
  v1::Event bad = Valid();
  bad.clear_device_id();
  *events.Add() = bad;
  *events.Add() = Valid();
  PreparedBatch b = PrepareEvents(events, kNowUs, 10, {});
  ASSERT_EQ(b.accepted.size(), 2u);
  ASSERT_EQ(b.rejected.size(), 1u);
  EXPECT_EQ(b.rejected[0].index(), 11);
  EXPECT_EQ(b.rejected[0].reason(), v1::REJECT_REASON_MISSING_DEVICE_ID);
  EXPECT_FALSE(b.rejected[0].message().empty());
  StampAccepted(b, kNowUs + 7);
  v1::Event stored;
  ASSERT_TRUE(stored.ParseFromString(b.accepted[0].value));
  EXPECT_EQ(stored.ingest_time_us(), kNowUs + 7);
  EXPECT_EQ(b.accepted[0].key, "d1");
  // Each accepted event has its own stamp: the reservation's first plus its place among them.
  ASSERT_TRUE(stored.ParseFromString(b.accepted[1].value));
  EXPECT_EQ(stored.ingest_time_us(), kNowUs + 8);
  EXPECT_EQ(stored.time(), Valid().time()) << "its own time stays";
}

// Rejected events take no stamps: a caller whose events are all refused (10,000 empty ones a
// request, as fast as ingest parses them) must not push everyone's ingest times ahead.
TEST(PrepareAndStamp, OnlyAcceptedEventsTakeStamps) {
  IngestClock clock;
  v1::WriteRequest req;
  for (int i = 0; i < 10'000; ++i) req.add_events();  // no device, no time, no measures
  *req.add_events() = Valid();
  const std::string wire = req.SerializeAsString();
  EncodedRequest parsed;
  ASSERT_TRUE(parsed.Parse(wire));
  for (int round = 0; round < 3; ++round) {
    const PreparedBatch b = PrepareAndStamp(clock, kNowUs, parsed.events(), 0, {}, {});
    ASSERT_EQ(b.accepted.size(), 1u);
    ASSERT_EQ(b.rejected.size(), 10'000u);
    v1::Event stored;
    ASSERT_TRUE(stored.ParseFromString(b.accepted[0].value));
    EXPECT_EQ(stored.ingest_time_us(), kNowUs + round);
  }
  EXPECT_EQ(clock.Now(kNowUs), kNowUs + 3);
}

// A format without a time (the turbine format): each reading's time is its own stamp, unique
// even across requests validated at the same instant.
TEST(StampAccepted, ATimeFromTheStampIsEachRecordsOwn) {
  google::protobuf::RepeatedPtrField<v1::Event> events;
  for (int i = 0; i < 3; ++i) {
    v1::Event& e = *events.Add() = Valid();
    e.set_time(kNowUs);  // provisional: the instant it was validated at
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  }
  PreparedBatch b = PrepareEvents(events, kNowUs, 0, {});
  ASSERT_EQ(b.accepted.size(), 3u);
  StampAccepted(b, kNowUs + 40, /*time_is_stamp=*/true);
  for (int k = 0; k < 3; ++k) {
    v1::Event stored;
    ASSERT_TRUE(stored.ParseFromString(b.accepted[k].value));
    EXPECT_EQ(stored.ingest_time_us(), kNowUs + 40 + k);
    EXPECT_EQ(stored.time(), kNowUs + 40 + k);
    EXPECT_EQ(stored.time_unit(), v1::TIME_UNIT_MICROSECONDS);
  }
}

TEST(IngestClock, StampsAreUniqueAndFollowTheWallClock) {
  IngestClock clock;
  EXPECT_EQ(clock.Reserve(3, kNowUs), kNowUs);
  // The clock has not passed the stamps handed out: the next request follows them.
  EXPECT_EQ(clock.Reserve(2, kNowUs + 1), kNowUs + 3);
  // Nor when it steps back.
  EXPECT_EQ(clock.Reserve(1, kNowUs - 1'000'000), kNowUs + 5);
  // Once it has, stamps are the wall clock again.
  EXPECT_EQ(clock.Reserve(4, kNowUs + 100), kNowUs + 100);
}

TEST(IngestClock, ConcurrentRequestsNeverShareAStamp) {
  IngestClock clock;
  constexpr int kThreads = 4, kRequests = 2000, kEvents = 7;
  std::vector<std::vector<int64_t>> firsts(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRequests; ++r) firsts[t].push_back(clock.Reserve(kEvents, kNowUs));
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int64_t> all;
  for (const auto& f : firsts) all.insert(all.end(), f.begin(), f.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i) ASSERT_GE(all[i] - all[i - 1], kEvents);
  EXPECT_EQ(all.front(), kNowUs);
}

TEST(PrepareEvents, TheStampReplacesWhatAClientSentAndKeepsTheRest) {
  google::protobuf::RepeatedPtrField<v1::Event> events;
  v1::Event forged = Valid();
  forged.set_ingest_time_us(1);  // a client may not choose its own ingest time
  forged.set_replayed(true);     // nor keep its event out of the lake
  forged.set_version(7);
  *events.Add() = forged;
  PreparedBatch b = PrepareEvents(events, kNowUs, 0, {});
  ASSERT_EQ(b.accepted.size(), 1u);
  StampAccepted(b, kNowUs);
  v1::Event stored;
  ASSERT_TRUE(stored.ParseFromString(b.accepted[0].value));
  EXPECT_EQ(stored.ingest_time_us(), kNowUs);
  EXPECT_FALSE(stored.replayed());
  v1::Event expected = forged;
  expected.set_ingest_time_us(kNowUs);
  expected.set_replayed(false);
  EXPECT_EQ(stored.SerializeAsString(), expected.SerializeAsString());
}

TEST(EncodedRequest, FindsEachEventInPlaceAndSkipsUnknownFields) {
  v1::WriteRequest req;
  *req.add_events() = Valid();
  v1::Event second = Valid();
  second.set_device_id("d2");
  *req.add_events() = second;
  std::string wire = req.SerializeAsString();
  wire += std::string("\x38\x05", 2);    // field 7, varint 5: unknown
  wire += std::string("\x42\x02xy", 4);  // field 8, 2 bytes: unknown
  wire += std::string("\x0a\x00", 2);    // a third event, empty
  EncodedRequest parsed;
  ASSERT_TRUE(parsed.Parse(wire));
  ASSERT_EQ(parsed.events().size(), 3u);
  EXPECT_EQ(parsed.events()[0], Valid().SerializeAsString());
  EXPECT_EQ(parsed.events()[1], second.SerializeAsString());
  EXPECT_EQ(parsed.events()[2], "");
  EXPECT_TRUE(parsed.Parse(""));
  EXPECT_TRUE(parsed.events().empty());
}

TEST(EncodedRequest, RefusesBrokenFraming) {
  const std::string event = Valid().SerializeAsString();
  v1::WriteRequest req;
  *req.add_events() = Valid();
  const std::string wire = req.SerializeAsString();
  EncodedRequest parsed;
  EXPECT_FALSE(parsed.Parse(wire.substr(0, wire.size() - 1))) << "event cut short";
  EXPECT_FALSE(parsed.Parse(std::string("\x00\x01", 2))) << "field number 0";
  EXPECT_FALSE(parsed.Parse(std::string("\x0b", 1))) << "a group";
  EXPECT_FALSE(parsed.Parse(std::string("\x08\xff", 2))) << "varint cut short";
  EXPECT_FALSE(parsed.Parse(std::string("\x09\x01\x02", 3))) << "fixed64 cut short";
}

TEST(PrepareEncodedEvents, AnEventProtobufCannotDecodeIsRejectedOnItsOwn) {
  std::vector<std::string> wire = {Valid().SerializeAsString(), std::string("\x0a\x05d", 3),
                                   Valid().SerializeAsString()};
  PreparedBatch b = PrepareEncodedEvents({wire.begin(), wire.end()}, kNowUs, 0, {});
  ASSERT_EQ(b.accepted.size(), 2u);
  ASSERT_EQ(b.rejected.size(), 1u);
  EXPECT_EQ(b.rejected[0].index(), 1);
  EXPECT_EQ(b.rejected[0].reason(), v1::REJECT_REASON_UNDECODABLE);
}

// The bytes path decides as protobuf's decoding of the whole request would: the same
// records, keys and rejections, on requests with random edits; where protobuf refuses the
// request for one event, that event alone is refused.
TEST(PrepareEncodedEvents, AgreesWithTheMessagePathOnMutatedRequests) {
  google::protobuf::LogSilencer quiet;  // protobuf logs every text that is not UTF-8
  std::mt19937_64 random(20261122);
  v1::WriteRequest base;
  *base.add_events() = Valid();
  v1::Event other = Valid();
  other.set_device_id("d2");
  (*other.mutable_dimensions())["site"] = "north";
  (*other.mutable_measures())["state"].set_string_value("ok");
  other.set_version(3);
  *base.add_events() = other;
  v1::Event nameless = Valid();
  nameless.clear_device_id();
  *base.add_events() = nameless;
  const std::string base_wire = base.SerializeAsString();
  int compared = 0;
  for (int i = 0; i < 20'000; ++i) {
    const std::string wire = testing::RandomEdits(base_wire, random);
    SCOPED_TRACE(i);
    v1::WriteRequest message;
    const bool decoded = message.ParseFromString(wire);
    EncodedRequest parsed;
    if (!parsed.Parse(wire)) {
      // Refused framing is refused by protobuf too, unless it skipped a group it kept.
      if (decoded) {
        EXPECT_FALSE(message.GetReflection()->GetUnknownFields(message).empty());
      }
      continue;
    }
    PreparedBatch from_bytes = PrepareEncodedEvents(parsed.events(), kNowUs, 0, {});
    if (!decoded) {
      bool undecodable = false;
      for (const v1::RejectedRecord& r : from_bytes.rejected) {
        undecodable |= r.reason() == v1::REJECT_REASON_UNDECODABLE;
      }
      EXPECT_TRUE(undecodable);
      continue;
    }
    ++compared;
    PreparedBatch from_message = PrepareEvents(message.events(), kNowUs, 0, {});
    ASSERT_EQ(from_bytes.accepted.size(), from_message.accepted.size());
    ASSERT_EQ(from_bytes.rejected.size(), from_message.rejected.size());
    for (size_t r = 0; r < from_bytes.rejected.size(); ++r) {
      EXPECT_EQ(from_bytes.rejected[r].index(), from_message.rejected[r].index());
      EXPECT_EQ(from_bytes.rejected[r].reason(), from_message.rejected[r].reason());
    }
    for (size_t a = 0; a < from_bytes.accepted.size(); ++a) {
      EXPECT_EQ(from_bytes.accepted[a].key, from_message.accepted[a].key);
      v1::Event stored, expected;
      ASSERT_TRUE(stored.ParseFromString(from_bytes.accepted[a].value));
      ASSERT_TRUE(expected.ParseFromString(from_message.accepted[a].value));
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(stored, expected));
    }
    if (HasFailure()) return;
  }
  EXPECT_GT(compared, 1000) << "too few edits left the request decodable to compare";
}

TEST(RequestShape, EmptyAndOversizedRequestsAreWhollyWrong) {
  ValidationLimits limits;
  limits.max_events_per_request = 5;
  EXPECT_EQ(ValidateRequestShape(0, limits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRequestShape(6, limits).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateRequestShape(5, limits).ok());
}

TEST(ReasonName, IsShortAndLowerCase) {
  EXPECT_EQ(ReasonName(v1::REJECT_REASON_MISSING_DEVICE_ID), "missing_device_id");
}

}  // namespace
}  // namespace tidemark::ingest
