#include "common/series/event_view.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/series/storable.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/support/event_view_check.h"
#include "tests/support/random_edits.h"

namespace tidemark::series {
namespace {

v1::Event Reading() {
  v1::Event e;
  e.set_device_id("turbine-7");
  e.set_time(1'767'225'600'123);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_dimensions())["site"] = "north";
  (*e.mutable_dimensions())["model"] = "V150";
  (*e.mutable_measures())["rpm"].set_double_value(14.25);
  (*e.mutable_measures())["alarms"].set_int64_value(-3);
  (*e.mutable_measures())["running"].set_bool_value(true);
  (*e.mutable_measures())["state"].set_string_value("généré");
  e.set_version(42);
  e.set_ingest_time_us(1'767'225'600'200'000);
  return e;
}

// What a record decodes to: the view and protobuf agree on whether it is an Event and on
// every value.
void ExpectSameDecoding(const std::string& record, EventView& view) {
  v1::Event message;
  const bool parsed = message.ParseFromString(record);
  ASSERT_EQ(view.Parse(record), parsed);
  if (parsed) {
    EXPECT_EQ(testing::EventViewDifference(view, message), "");
  }
}

TEST(EventView, DecodesARecordAsProtobufDoes) {
  EventView view;
  const v1::Event e = Reading();
  const std::string record = e.SerializeAsString();  // the view points into it
  ASSERT_TRUE(view.Parse(record));
  EXPECT_EQ(testing::EventViewDifference(view, e), "");
  // Sorted by name.
  ASSERT_EQ(view.measures().size(), 4u);
  EXPECT_EQ(view.measures()[0].first, "alarms");
  EXPECT_EQ(view.measures()[3].first, "state");
  EXPECT_EQ(view.dimensions()[0].first, "model");
  // Reused for a smaller record, nothing of the first one stays.
  v1::Event small;
  small.set_device_id("m");
  (*small.mutable_measures())["w"].set_double_value(1);
  const std::string small_record = small.SerializeAsString();
  ASSERT_TRUE(view.Parse(small_record));
  EXPECT_EQ(testing::EventViewDifference(view, small), "");
  EXPECT_FALSE(view.has_version());
}

TEST(EventView, UnusualEncodingsAreDecodedByProtobuf) {
  google::protobuf::LogSilencer quiet;
  EventView view;
  const std::string base = Reading().SerializeAsString();
  std::string record;  // the view points into it
  // An unknown field (number 20, varint), which protobuf keeps aside.
  record = base + std::string("\xa0\x01\x05", 3);
  ExpectSameDecoding(record, view);
  // A key sent twice: the map keeps the last entry.
  v1::Event again;
  (*again.mutable_measures())["rpm"].set_double_value(99);
  (*again.mutable_dimensions())["site"] = "south";
  record = base + again.SerializeAsString();
  ExpectSameDecoding(record, view);
  EXPECT_EQ(view.dimensions()[1].second, "south");
  // A scalar sent twice: the last one counts.
  v1::Event later;
  later.set_device_id("turbine-8");
  later.set_time(5);
  record = base + later.SerializeAsString();
  ExpectSameDecoding(record, view);
  EXPECT_EQ(view.device_id(), "turbine-8");
  // A field with another wire type than its own (time as fixed64).
  record = base + std::string("\x11\x01\x02\x03\x04\x05\x06\x07\x08", 9);
  ExpectSameDecoding(record, view);
  // Text that is not UTF-8 is refused; a NUL is valid UTF-8 (storable text is the later rule).
  v1::Event nul = Reading();
  nul.set_device_id(std::string("a\0b", 3));
  record = nul.SerializeAsString();
  ExpectSameDecoding(record, view);
  EXPECT_TRUE(CheckStorable(view).has_value());
  record = base;
  record.replace(record.find("turbine-7"), 1, "\xff");
  ExpectSameDecoding(record, view);
  // A length as an overlong varint: protobuf reads a size in at most 5 bytes, so an empty
  // device id whose length takes 8 is no Event (found by fuzz_raw_record), one in 5 is.
  record = std::string("\x0a\x80\x80\x80\x80\x80\x80\x80\x00", 9);
  ExpectSameDecoding(record, view);
  EXPECT_FALSE(view.Parse(record));
  record = std::string("\x0a\x80\x80\x80\x80\x00", 6);
  ExpectSameDecoding(record, view);
  record = base + std::string("\x0a\x83\x80\x80\x80\x80\x00xyz", 10);
  ExpectSameDecoding(record, view);
  // Truncated anywhere.
  for (size_t n = 0; n < base.size(); ++n) ExpectSameDecoding(base.substr(0, n), view);
}

TEST(EventView, AgreesWithProtobufOnMutatedRecords) {
  google::protobuf::LogSilencer quiet;  // protobuf logs every text that is not UTF-8
  std::mt19937_64 random(20261122);
  EventView view;
  const std::string base = Reading().SerializeAsString();
  for (int i = 0; i < 20'000; ++i) {
    const std::string record = testing::RandomEdits(base, random);
    SCOPED_TRACE(i);
    ExpectSameDecoding(record, view);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

TEST(EventView, StorableCheckIsTheMessagesCheck) {
  EventView view;
  v1::Event e = Reading();
  view.Assign(e);
  EXPECT_FALSE(CheckStorable(view).has_value());
  (*e.mutable_measures())["rpm"].set_double_value(1e300);
  view.Assign(e);
  ASSERT_TRUE(CheckStorable(view).has_value());
  EXPECT_EQ(CheckStorable(view)->reason, CheckStorable(e)->reason);
  e = Reading();
  e.clear_ingest_time_us();
  view.Assign(e);
  EXPECT_EQ(CheckStorable(view)->reason, v1::REJECT_REASON_UNDECODABLE);
}

}  // namespace
}  // namespace tidemark::series
