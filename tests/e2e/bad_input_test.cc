// A corpus of bad input through the real binaries: every record comes back accepted or
// rejected with its reason, the good records of the same request are stored, records that
// bypass ingest are refused identically by the writer and the aggregator, and the aggregate
// oracle holds afterwards.
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "gtest/gtest.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

const std::vector<std::string> kAggregatorFlags = {"--windows=5s", "--max_out_of_orderness=1s",
                                                   "--allowed_lateness=5s", "--idle_timeout=2s",
                                                   "--commit_interval=500ms"};
const std::string kNul("\0", 1);
// Quotes, backslashes, COPY's escapes, SQL and a character outside the BMP: all storable.
const std::string kHostile = "'); DROP TABLE points; -- \"q\" \\N \t {a=\"b\",c} \xf0\x9f\x8c\x8a";

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

v1::Event Good(int i, int64_t now_ms) {
  v1::Event e;
  e.set_device_id(absl::StrCat("good-", i % 7));
  e.set_time(now_ms - 2000 - i * 37);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_dimensions())["site"] = i % 2 ? "north" : kHostile;
  (*e.mutable_measures())["temperature"].set_double_value(20.0 + i * 0.25);
  return e;
}

std::string Hex(const std::string& s) {
  std::string out;
  for (unsigned char c : s) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return out;
}

struct Case {
  v1::Event event;
  v1::RejectReason expected;  // UNSPECIFIED: accepted
  int points = 0;             // points it stores when accepted
};

std::vector<Case> Corpus(int64_t now_ms) {
  std::vector<Case> cases;
  auto bad = [&](v1::RejectReason reason, auto mutate) {
    v1::Event e = Good(static_cast<int>(cases.size()), now_ms);
    mutate(e);
    cases.push_back({e, reason, 0});
  };
  auto good = [&](int points, auto mutate) {
    v1::Event e = Good(static_cast<int>(cases.size()), now_ms);
    mutate(e);
    cases.push_back({e, v1::REJECT_REASON_UNSPECIFIED, points});
  };
  using R = v1::RejectReason;
  good(1, [](v1::Event&) {});
  bad(R::REJECT_REASON_INVALID_TEXT, [](v1::Event& e) { e.set_device_id("dev" + kNul + "x"); });
  bad(R::REJECT_REASON_INVALID_TEXT, [](v1::Event& e) { (*e.mutable_dimensions())["site"] = kNul; });
  bad(R::REJECT_REASON_INVALID_TEXT,
      [](v1::Event& e) { (*e.mutable_measures())["t" + kNul].set_double_value(1); });
  bad(R::REJECT_REASON_INVALID_TEXT,
      [](v1::Event& e) { (*e.mutable_measures())["note"].set_string_value("a" + kNul + "b"); });
  bad(R::REJECT_REASON_NUMBER_OUT_OF_RANGE,
      [](v1::Event& e) { (*e.mutable_measures())["temperature"].set_double_value(1e300); });
  bad(R::REJECT_REASON_NON_FINITE_NUMBER, [](v1::Event& e) {
    (*e.mutable_measures())["temperature"].set_double_value(std::nan(""));
  });
  bad(R::REJECT_REASON_MISSING_DEVICE_ID, [](v1::Event& e) { e.clear_device_id(); });
  bad(R::REJECT_REASON_MISSING_TIME, [](v1::Event& e) { e.set_time(0); });
  bad(R::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE,
      [&](v1::Event& e) { e.set_time(now_ms + 2 * 86'400'000LL); });
  bad(R::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE,
      [](v1::Event& e) { e.set_time(std::numeric_limits<int64_t>::max()); });
  bad(R::REJECT_REASON_TIME_BEFORE_RETENTION,
      [&](v1::Event& e) { e.set_time(now_ms - 30 * 86'400'000LL); });
  bad(R::REJECT_REASON_NO_MEASURES, [](v1::Event& e) { e.clear_measures(); });
  bad(R::REJECT_REASON_NO_MEASURES, [](v1::Event& e) { (*e.mutable_measures())["empty"]; });
  bad(R::REJECT_REASON_RESERVED_NAME,
      [](v1::Event& e) { (*e.mutable_dimensions())["measure_name"] = "x"; });
  bad(R::REJECT_REASON_NAME_TOO_LONG,
      [](v1::Event& e) { (*e.mutable_measures())[std::string(300, 'm')].set_double_value(1); });
  bad(R::REJECT_REASON_TOO_MANY_MEASURES, [](v1::Event& e) {
    for (int m = 0; m < 300; ++m) (*e.mutable_measures())[absl::StrCat("m", m)].set_double_value(m);
  });
  bad(R::REJECT_REASON_TOO_MANY_DIMENSIONS, [](v1::Event& e) {
    for (int d = 0; d < 100; ++d) (*e.mutable_dimensions())[absl::StrCat("d", d)] = "v";
  });
  bad(R::REJECT_REASON_PAYLOAD_TOO_LARGE,
      [](v1::Event& e) { (*e.mutable_measures())["blob"].set_string_value(std::string(70'000, 'x')); });
  // Accepted: hostile but storable text, extreme but finite numbers, a string and a bool of a
  // measure that is numeric elsewhere (their own series), a duplicate.
  good(2, [](v1::Event& e) {
    e.set_device_id(kHostile);
    (*e.mutable_measures())["note"].set_string_value(kHostile);
  });
  good(3, [](v1::Event& e) {
    (*e.mutable_measures())["big"].set_double_value(-1e290);
    (*e.mutable_measures())["max_int"].set_int64_value(std::numeric_limits<int64_t>::max());
  });
  good(1, [](v1::Event& e) { e.set_device_id("kinds"); });
  good(1, [](v1::Event& e) {
    e.set_device_id("kinds");
    (*e.mutable_measures())["temperature"].set_string_value("hot");
  });
  good(1, [](v1::Event& e) {
    e.set_device_id("kinds");
    (*e.mutable_measures())["temperature"].set_bool_value(true);
  });
  good(0, [&](v1::Event& e) { e = cases.front().event; });  // a duplicate stores nothing new
  return cases;
}

TEST(BadInput, EveryRecordIsAnsweredAndTheGoodOnesAreStored) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  const int64_t now_ms = NowMs();

  // 1. Write: the corpus with good events between its bad ones.
  std::vector<Case> cases = Corpus(now_ms);
  for (int i = 0; i < 60; ++i) cases.push_back({Good(100 + i, now_ms), {}, 1});
  v1::WriteRequest req;
  for (const Case& c : cases) *req.add_events() = c.event;
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  ASSERT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  std::map<int, v1::RejectReason> rejected;
  for (const v1::RejectedRecord& r : resp.rejected()) {
    rejected[r.index()] = r.reason();
    EXPECT_FALSE(r.message().empty());
  }
  int64_t good_events = 0, good_points = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const v1::RejectReason got =
        rejected.count(static_cast<int>(i)) ? rejected[static_cast<int>(i)] : v1::REJECT_REASON_UNSPECIFIED;
    EXPECT_EQ(v1::RejectReason_Name(got), v1::RejectReason_Name(cases[i].expected)) << "record " << i;
    if (cases[i].expected == v1::REJECT_REASON_UNSPECIFIED) {
      ++good_events;
      good_points += cases[i].points;
    }
  }
  EXPECT_EQ(resp.accepted(), good_events);

  // 2. WriteJson: the same idea for JSON devices.
  v1::WriteJsonRequest json;
  json.set_format(v1::JSON_FORMAT_TIMESTREAM_SAMPLE);
  const std::string t = absl::StrCat(now_ms - 1500);
  const std::vector<std::pair<std::string, bool>> records = {
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-1", "speed_measure": 1.5})"), true},
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-2\u0000", "speed_measure": 1})"), false},
      {absl::StrCat(R"({"Time": )", t, ", \"DeviceID\": \"json-3\xff\", \"speed_measure\": 1}"), false},
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-4", "speed_measure": 18446744073709551615})"), true},
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-5", "speed_measure": {"x": 1}})"), false},
      {R"([1, 2, 3])", false},
      {R"({"Time": )", false},
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-6", "speed_measure": 2, "pad": ")",
                    std::string(70'000, 'p'), "\"}"),
       false},
      {absl::StrCat(R"({"Time": )", t, R"(, "DeviceID": "json-7", "speed_measure": 1e300})"), false},
  };
  for (const auto& [text, ok] : records) json.add_records(text);
  grpc::ClientContext json_ctx;
  v1::WriteResponse json_resp;
  ASSERT_TRUE(stack.ingest().WriteJson(&json_ctx, json, &json_resp).ok());
  std::set<int> json_rejected;
  for (const v1::RejectedRecord& r : json_resp.rejected()) json_rejected.insert(r.index());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(json_rejected.count(static_cast<int>(i)) == 0, records[i].second) << records[i].first.substr(0, 80);
    if (records[i].second) ++good_points;
  }

  // A request beyond the 16 MiB message limit is refused whole, before it is parsed; the
  // service goes on serving.
  {
    v1::WriteJsonRequest huge;
    for (int i = 0; i < 300; ++i) huge.add_records(std::string(60'000, ' ') + "{}");
    grpc::ClientContext huge_ctx;
    v1::WriteResponse huge_resp;
    EXPECT_EQ(stack.ingest().WriteJson(&huge_ctx, huge, &huge_resp).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  // 3. Records written straight to Kafka, past ingest: the writer and the aggregator must refuse
  //    the same ones, so that no aggregate counts a point the store does not hold.
  auto producer = kafka::Producer::Create({.brokers = stack.brokers()}, log::MakeLogger("bad-input-test"));
  ASSERT_TRUE(producer.ok()) << producer.status();
  std::vector<v1::Event> bypass;
  for (int i = 0; i < 4; ++i) {
    v1::Event e = Good(200 + i, now_ms);
    e.set_device_id("bypass");
    e.set_ingest_time_us(now_ms * 1000);
    bypass.push_back(e);
  }
  (*bypass[0].mutable_dimensions())["site"] = "x" + kNul;
  (*bypass[1].mutable_measures())["temperature"].set_double_value(1e305);
  bypass[2].clear_ingest_time_us();
  // bypass[3] is valid: stored and counted.
  ++good_points;
  for (const v1::Event& e : bypass) {
    ASSERT_TRUE((*producer)->Produce("tidemark.raw", e.device_id(), e.SerializeAsString(), nullptr).ok());
  }
  (*producer)->Produce("tidemark.raw", "garbage", "\x08\x96\x01 not an event", nullptr).IgnoreError();
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());

  // The aggregator says it skipped the record that is not an event (DESIGN §4: logged).
  EXPECT_TRUE(WaitFor(
      [&] { return absl::StrContains(stack.aggregator(0).Log(), "raw records that are not events"); },
      absl::Seconds(60)))
      << stack.aggregator(0).Log();

  // Everything good lands; nothing bad does.
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == good_points; }, absl::Seconds(60)))
      << "stored " << stack.CountPoints() << ", expected " << good_points;
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM series WHERE device_id LIKE 'json-2%' OR device_id LIKE 'json-3%'"),
            "0");
  EXPECT_EQ(stack.Sql(absl::StrCat("SELECT count(*) FROM points p JOIN series s USING (series_id)"
                                   " WHERE encode(convert_to(p.value_string, 'UTF8'), 'hex') = '",
                                   Hex(kHostile), "' AND encode(convert_to(s.device_id, 'UTF8'), 'hex') = '",
                                   Hex(kHostile), "'")),
            "1");
  EXPECT_EQ(stack.Sql("SELECT count(DISTINCT series_id) FROM series WHERE measure_name = 'temperature'"
                      " AND device_id = 'kinds'"),
            "3")
      << "a number, a string and a bool of one measure are three series";

  // The oracle: every stored aggregate equals the recomputation from the stored points.
  testing::OracleResult r;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = testing::AggregateOracle(stack, "(interval '5 seconds')");
        return r.Matches();
      },
      absl::Seconds(60)))
      << "windows " << r.windows << ", missing " << r.missing << ", wrong " << r.wrong << ", extra "
      << r.extra;
}

TEST(BadInput, AStreamListsTenThousandRejectionsAndCountsTheRest) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> stream = stack.ingest().WriteStream(&ctx, &resp);
  const int64_t now_ms = NowMs();
  for (int message = 0; message < 3; ++message) {
    v1::WriteRequest req;
    for (int i = 0; i < 5000; ++i) {
      v1::Event& e = *req.add_events() = Good(i, now_ms);
      e.clear_device_id();  // every one rejected
    }
    *req.add_events() = Good(message, now_ms);  // and one good event per message
    ASSERT_TRUE(stream->Write(req));
  }
  ASSERT_TRUE(stream->WritesDone());
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(resp.accepted(), 3);
  EXPECT_EQ(resp.rejected_size(), 10'000);
  EXPECT_EQ(resp.rejected_unlisted(), 5'000);
  EXPECT_EQ(resp.rejected(0).index(), 0);
  EXPECT_EQ(resp.rejected(9'999).index(), 9'999 + 1) << "indexes count the good event too";
}

// A stream message is bounded like a Write (--max_events_per_request): the stream ends
// INVALID_ARGUMENT with what its earlier messages made durable, and nothing of the message.
TEST(BadInput, AStreamMessageBeyondTheRequestLimitEndsTheStream) {
  Stack stack(testing::SharedPgCluster(),
              testing::StackOptions{.aggregator_flags = kAggregatorFlags,
                                    .ingest_flags = {"--max_events_per_request=100"}});
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> stream =
      stack.ingest().WriteStream(&ctx, &resp);
  const int64_t now_ms = NowMs();
  v1::WriteRequest first;
  for (int i = 0; i < 100; ++i) *first.add_events() = Good(i, now_ms);  // at the limit
  ASSERT_TRUE(stream->Write(first));
  v1::WriteRequest oversized;
  for (int i = 0; i < 101; ++i) *oversized.add_events() = Good(1000 + i, now_ms);
  stream->Write(oversized);  // may fail once the stream has ended
  stream->WritesDone();
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "has 101 events; send at most 100"))
      << status.error_message();
  const std::optional<std::string> answer_bytes = testing::StreamAnswerBytes(ctx);
  ASSERT_TRUE(answer_bytes.has_value());
  v1::WriteResponse answer;
  ASSERT_TRUE(answer.ParseFromString(*answer_bytes));
  EXPECT_EQ(answer.accepted(), 100) << "the first message is durable";
  EXPECT_EQ(answer.rejected_size(), 0);
  // Nothing of the oversized message was stored (its events have times of their own).
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == 100; }, absl::Seconds(60)))
      << "stored " << stack.CountPoints();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(stack.CountPoints(), 100);
}

}  // namespace
}  // namespace tidemark::e2e
