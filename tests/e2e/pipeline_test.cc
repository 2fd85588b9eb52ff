// The real binaries as processes: devbroker, timestream-writer, ingest, query and the
// simulator, driven over gRPC against one PostgreSQL cluster per test binary.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"
#include "tidemark/v1/ingest.grpc.pb.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::e2e {
namespace {

using testing::ChildProcess;
using testing::FreePort;
using testing::WaitFor;

using testing::Stack;

// Runs the simulator to completion and returns its JSON summary.
nlohmann::json RunSimulator(Stack& stack, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--devices=40", "--batch_size=100"};
  args.insert(args.end(), extra.begin(), extra.end());
  return stack.RunSimulator(args);
}

TEST(Pipeline, SimulatorToQueryReadsEveryAcknowledgedPoint) {
  Stack stack(testing::SharedPgCluster());
  const nlohmann::json summary = RunSimulator(
      stack, {"--rate=2000", "--max_records=4000", "--duration=60s", "--percent_late=5",
              "--late_time=75s", "--percent_clock_ahead=10", "--clock_ahead=30m"});
  const int64_t expected = summary["points_accepted"];
  EXPECT_EQ(summary["accepted"], 4000);
  EXPECT_EQ(summary["rejected"], 0);
  ASSERT_GT(expected, 4000);
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == expected; }, absl::Seconds(60)))
      << "readable " << stack.CountPoints() << " of " << expected;
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(stack.CountPoints(), expected) << "nothing more than what was acknowledged";

  // Clock-ahead devices were stored at their ingest time, not 30 minutes ahead.
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM points WHERE time > now() + interval '1 minute'"), "0");

  // Both reference formats are queryable by measure and device.
  v1::ListSeriesRequest list;
  list.mutable_selector()->set_measure_name("speed");
  grpc::ClientContext ctx;
  v1::ListSeriesResponse series;
  const grpc::Status ls = stack.query().ListSeries(&ctx, list, &series);
  ASSERT_TRUE(ls.ok()) << ls.error_code() << " " << ls.error_message();
  EXPECT_EQ(series.series_size(), 20);
  EXPECT_TRUE(absl::StartsWith(series.series(0).dimensions().at("device_id"), "turbine-"));
}

TEST(Pipeline, WriterKilledMidStreamLosesAndDuplicatesNothing) {
  Stack stack(testing::SharedPgCluster());
  auto sim =
      stack.StartSimulator({"--devices=40", "--batch_size=100", "--rate=1500", "--duration=20s"});
  for (int kill_round = 0; kill_round < 2; ++kill_round) {
    // Kill only once this writer has stored something more: a kill mid-stream.
    const int64_t before = stack.CountPoints();
    ASSERT_TRUE(WaitFor([&] { return stack.CountPoints() > before; }, absl::Seconds(30)));
    stack.writer().Signal(SIGKILL);
    ASSERT_TRUE(stack.writer().Wait(absl::Seconds(10)).ok());
    stack.StartWriter();
  }
  ASSERT_TRUE(sim->Wait(absl::Seconds(60)).ok());
  const nlohmann::json summary = testing::SimulatorSummary(sim->Log());
  ASSERT_FALSE(summary.is_null()) << sim->Log();
  const int64_t expected = summary["points_accepted"];
  ASSERT_GT(expected, 0);
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == expected; }, absl::Seconds(90)))
      << "readable " << stack.CountPoints() << " of " << expected;
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(stack.CountPoints(), expected);
}

v1::Event GoodEvent(const std::string& device, double value) {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(absl::ToUnixMillis(absl::Now()));
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(value);
  return e;
}

TEST(Pipeline, BadRecordsComeBackWithIndexAndReasonWhileGoodOnesAreStored) {
  Stack stack(testing::SharedPgCluster());
  v1::WriteRequest req;
  *req.add_events() = GoodEvent("good-1", 1.0);
  v1::Event no_device = GoodEvent("", 2.0);
  *req.add_events() = no_device;
  *req.add_events() = GoodEvent("good-2", 3.0);
  v1::Event nan = GoodEvent("bad-nan", 0);
  (*nan.mutable_measures())["temperature"].set_double_value(std::nan(""));
  *req.add_events() = nan;
  v1::Event future = GoodEvent("bad-future", 1);
  future.set_time(absl::ToUnixMillis(absl::Now() + absl::Hours(48)));
  *req.add_events() = future;

  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  ASSERT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.accepted(), 2);
  ASSERT_EQ(resp.rejected_size(), 3);
  EXPECT_EQ(resp.rejected(0).index(), 1);
  EXPECT_EQ(resp.rejected(0).reason(), v1::REJECT_REASON_MISSING_DEVICE_ID);
  EXPECT_EQ(resp.rejected(1).index(), 3);
  EXPECT_EQ(resp.rejected(1).reason(), v1::REJECT_REASON_NON_FINITE_NUMBER);
  EXPECT_EQ(resp.rejected(2).index(), 4);
  EXPECT_EQ(resp.rejected(2).reason(), v1::REJECT_REASON_TIME_TOO_FAR_IN_FUTURE);

  // JSON: a malformed record among good ones.
  v1::WriteJsonRequest json;
  json.set_format(v1::JSON_FORMAT_TURBINE);
  json.add_records(R"({"turbineId": "turbine-0001", "speed": 60})");
  json.add_records(R"({"turbineId": "turbine-0002", "speed": )");
  grpc::ClientContext jctx;
  v1::WriteResponse jresp;
  ASSERT_TRUE(stack.ingest().WriteJson(&jctx, json, &jresp).ok());
  EXPECT_EQ(jresp.accepted(), 1);
  ASSERT_EQ(jresp.rejected_size(), 1);
  EXPECT_EQ(jresp.rejected(0).index(), 1);
  EXPECT_EQ(jresp.rejected(0).reason(), v1::REJECT_REASON_MALFORMED_JSON);

  // A wholly wrong request.
  grpc::ClientContext ectx;
  v1::WriteRequest empty;
  EXPECT_EQ(stack.ingest().Write(&ectx, empty, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == 3; }, absl::Seconds(30)));
  v1::ListSeriesRequest list;
  grpc::ClientContext lctx;
  v1::ListSeriesResponse series;
  const grpc::Status ls = stack.query().ListSeries(&lctx, list, &series);
  ASSERT_TRUE(ls.ok()) << ls.error_code() << " " << ls.error_message();
  std::set<std::string> devices;
  for (const auto& s : series.series()) devices.insert(s.dimensions().at("device_id"));
  EXPECT_EQ(devices, (std::set<std::string>{"good-1", "good-2", "turbine-0001"}));
}

// Readings of one device in one request are each a point: ingest gives every event its own
// ingest time (its default version, and its time when its clock runs ahead).
TEST(Pipeline, EveryReadingOfARequestIsStoredEvenAtOneCorrectedOrArrivalTime) {
  Stack stack(testing::SharedPgCluster());
  v1::WriteRequest req;
  // A device whose clock is an hour fast sends ten buffered readings: all are corrected to
  // their ingest times, which keep the order they were sent in.
  for (int i = 0; i < 10; ++i) {
    v1::Event e = GoodEvent("fast-clock", i);
    e.set_time(absl::ToUnixMillis(absl::Now() + absl::Hours(1) + absl::Seconds(i)));
    *req.add_events() = e;
  }
  // Two readings of one instant without a version: the later one in the request wins.
  v1::Event first = GoodEvent("same-instant", 1.0);
  v1::Event second = first;
  (*second.mutable_measures())["temperature"].set_double_value(2.0);
  *req.add_events() = first;
  *req.add_events() = second;
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  ASSERT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.accepted(), 12);

  // The turbine format has no time: three readings of one turbine at three arrival times,
  // each its own ingest time (a malformed record before them changes nothing).
  v1::WriteJsonRequest json;
  json.set_format(v1::JSON_FORMAT_TURBINE);
  json.add_records(R"({"turbineId": )");
  for (int speed : {10, 20, 30}) {
    json.add_records(absl::StrCat(R"({"turbineId": "turbine-0042", "speed": )", speed, "}"));
  }
  grpc::ClientContext jctx;
  v1::WriteResponse jresp;
  ASSERT_TRUE(stack.ingest().WriteJson(&jctx, json, &jresp).ok());
  EXPECT_EQ(jresp.accepted(), 3);
  EXPECT_EQ(jresp.rejected_size(), 1);

  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == 14; }, absl::Seconds(30)))
      << "stored " << stack.CountPoints() << " of 14 points";
  auto values_in_time_order = [&](const std::string& device) {
    return stack.Sql(absl::StrCat(
        "SELECT string_agg(coalesce(value_double, value_int)::text, ',' ORDER BY time) "
        "FROM points JOIN series USING (series_id) WHERE device_id = '",
        device, "'"));
  };
  EXPECT_EQ(values_in_time_order("fast-clock"), "0,1,2,3,4,5,6,7,8,9");
  EXPECT_EQ(values_in_time_order("same-instant"), "2");
  EXPECT_EQ(values_in_time_order("turbine-0042"), "10,20,30");
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM points JOIN series USING (series_id)"
                      " WHERE device_id = 'turbine-0042' AND time = ingested_at"),
            "3");
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM points WHERE time > now() + interval '1 minute'"), "0");
}

TEST(Pipeline, WriteStreamIndexesRejectionsAcrossTheStream) {
  Stack stack(testing::SharedPgCluster());
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  auto stream = stack.ingest().WriteStream(&ctx, &resp);
  for (int m = 0; m < 3; ++m) {
    v1::WriteRequest req;
    for (int i = 0; i < 4; ++i) {
      *req.add_events() = GoodEvent(absl::StrCat("s-", m, "-", i), i);
    }
    if (m == 1) req.mutable_events(2)->clear_device_id();  // overall index 6
    ASSERT_TRUE(stream->Write(req));
  }
  ASSERT_TRUE(stream->WritesDone());
  const grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.accepted(), 11);
  ASSERT_EQ(resp.rejected_size(), 1);
  EXPECT_EQ(resp.rejected(0).index(), 6);
  EXPECT_EQ(resp.rejected(0).reason(), v1::REJECT_REASON_MISSING_DEVICE_ID);
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == 11; }, absl::Seconds(30)));

  // A message that is not a WriteRequest ends a stream; the error says how many events of
  // its earlier messages were made durable.
  grpc::GenericStub generic(grpc::CreateChannel(absl::StrCat("127.0.0.1:", stack.ingest_port()),
                                                grpc::InsecureChannelCredentials()));
  grpc::ClientContext gctx;
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&gctx, "/tidemark.v1.IngestService/WriteStream", &cq);
  auto wait = [&](void* tag) {
    void* got = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&got, &ok));
    EXPECT_EQ(got, tag);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(wait(reinterpret_cast<void*>(1)));
  v1::WriteRequest good;
  for (int i = 0; i < 3; ++i) *good.add_events() = GoodEvent(absl::StrCat("g-", i), i);
  const std::string wire = good.SerializeAsString();
  grpc::Slice good_slice(wire), broken_slice(std::string("\x0b", 1));  // a group: refused
  grpc::ByteBuffer good_buffer(&good_slice, 1), broken_buffer(&broken_slice, 1);
  call->Write(good_buffer, reinterpret_cast<void*>(2));
  ASSERT_TRUE(wait(reinterpret_cast<void*>(2)));
  call->Write(broken_buffer, reinterpret_cast<void*>(3));
  wait(reinterpret_cast<void*>(3));
  call->WritesDone(reinterpret_cast<void*>(4));
  wait(reinterpret_cast<void*>(4));
  grpc::ByteBuffer answer;
  call->Read(&answer, reinterpret_cast<void*>(5));
  wait(reinterpret_cast<void*>(5));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(6));
  wait(reinterpret_cast<void*>(6));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      absl::StrContains(status.error_message(), "3 events of this stream were acknowledged"))
      << status.error_message();
  EXPECT_TRUE(WaitFor([&] { return stack.CountPoints() == 14; }, absl::Seconds(30)));
}

// SIGTERM ends an open stream at once with UNAVAILABLE and how many of its events Kafka
// acknowledged (they will be stored), instead of letting it write through the grace period and
// cancelling it without that count.
TEST(Pipeline, IngestShutdownEndsAStreamWithItsAcknowledgedCount) {
  Stack stack(testing::SharedPgCluster());
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  auto stream = stack.ingest().WriteStream(&ctx, &resp);
  v1::WriteRequest req;
  for (int i = 0; i < 3; ++i) *req.add_events() = GoodEvent(absl::StrCat("shutdown-", i), i);
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(WaitFor([&] { return stack.CountPoints() == 3; }, absl::Seconds(30)));
  const absl::Time signalled = absl::Now();
  stack.ingest_process().Signal(SIGTERM);
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(
      absl::StrContains(status.error_message(), "3 events of this stream were acknowledged"))
      << status.error_message();
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(3)) << "not at the end of the grace period";
  const absl::StatusOr<int> code = stack.ingest_process().Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(Pipeline, IngestAnswersUnavailableWhenKafkaIsGone) {
  Stack stack(testing::SharedPgCluster());
  stack.broker().Signal(SIGKILL);
  ASSERT_TRUE(stack.broker().Wait(absl::Seconds(10)).ok());
  v1::WriteRequest req;
  *req.add_events() = GoodEvent("d", 1.0);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(8));
  v1::WriteResponse resp;
  const absl::Time start = absl::Now();
  const grpc::Status s = stack.ingest().Write(&ctx, req, &resp);
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
              s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_code() << " " << s.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(8)) << "answered within the deadline";
}

TEST(Operations, HealthCheckingAndPrometheusMetrics) {
  Stack stack(testing::SharedPgCluster());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", stack.ingest_port()),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Write something, then read the counters over HTTP.
  v1::WriteRequest write;
  *write.add_events() = GoodEvent("metrics-1", 1.0);
  *write.add_events() = GoodEvent("", 1.0);
  grpc::ClientContext wctx;
  v1::WriteResponse wresp;
  ASSERT_TRUE(stack.ingest().Write(&wctx, write, &wresp).ok());
  const std::string log = stack.ingest_process().Log();
  const size_t at = log.find("metrics_port=");
  ASSERT_NE(at, std::string::npos) << log;
  const int port = std::stoi(log.substr(at + 13));
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res) << "no answer on the metrics port " << port;
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("tidemark_ingest_events_accepted_total 1\n"), std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("tidemark_ingest_events_rejected_total 1\n"), std::string::npos);
  EXPECT_NE(res->body.find("# TYPE tidemark_ingest_write_seconds histogram"), std::string::npos);

  // A stream's events count as Kafka acknowledges them, while it is still open, and each of
  // its messages is timed as a Write is.
  grpc::ClientContext sctx;
  v1::WriteResponse sresp;
  auto stream = stack.ingest().WriteStream(&sctx, &sresp);
  for (int m = 0; m < 2; ++m) {
    v1::WriteRequest message;
    for (int i = 0; i < 5; ++i) *message.add_events() = GoodEvent(absl::StrCat("stream-", m), i);
    ASSERT_TRUE(stream->Write(message));
  }
  std::string open_body;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = http.Get("/metrics");
        open_body = r ? r->body : "";
        return absl::StrContains(open_body, "tidemark_ingest_events_accepted_total 11\n") &&
               absl::StrContains(open_body, "tidemark_ingest_write_seconds_count 3\n");
      },
      absl::Seconds(30)))
      << open_body;
  ASSERT_TRUE(stream->WritesDone());
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(sresp.accepted(), 10);
  res = http.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_TRUE(absl::StrContains(res->body, "tidemark_ingest_events_accepted_total 11\n"))
      << "counted once\n"
      << res->body;

  // The writer reports how far behind each of its consumer loops is.
  const std::string wlog = stack.writer().Log();
  const size_t wat = wlog.find("metrics_port=");
  ASSERT_NE(wat, std::string::npos) << wlog;
  httplib::Client writer_http("127.0.0.1", std::stoi(wlog.substr(wat + 13)));
  auto wres = writer_http.Get("/metrics");
  ASSERT_TRUE(wres);
  EXPECT_NE(wres->body.find("tidemark_writer_consumer_lag_records{loop=\"raw\"}"),
            std::string::npos)
      << wres->body;
  EXPECT_NE(wres->body.find("tidemark_writer_records_total{loop=\"raw\"}"), std::string::npos);
}

TEST(Query, ErrorsAreStatusesWithMessages) {
  Stack stack(testing::SharedPgCluster());
  v1::ReadPointsRequest req;
  req.mutable_range()->set_start_us(10);
  req.mutable_range()->set_end_us(5);
  grpc::ClientContext ctx;
  v1::ReadPointsResponse resp;
  grpc::Status s = stack.query().ReadPoints(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("end_us"), std::string::npos);

  v1::ListSeriesRequest list;
  list.set_page_token("not-a-token");
  grpc::ClientContext lctx;
  v1::ListSeriesResponse lresp;
  s = stack.query().ListSeries(&lctx, list, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_token"), std::string::npos);
}

}  // namespace
}  // namespace tidemark::e2e
