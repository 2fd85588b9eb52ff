// The real binaries as processes: devbroker, timestream-writer, ingest, query and the
// simulator, driven over gRPC against one PostgreSQL cluster per test binary.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tidemark/v1/ingest.grpc.pb.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::e2e {
namespace {

using testing::ChildProcess;
using testing::FreePort;
using testing::PgCluster;
using testing::WaitFor;

PgCluster* pg = nullptr;

class Environment final : public ::testing::Environment {
 public:
  void SetUp() override {
    auto c = PgCluster::Start();
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = *std::move(c);
    pg = cluster_.get();
  }
  void TearDown() override { cluster_.reset(); }

 private:
  std::unique_ptr<PgCluster> cluster_;
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Environment);

std::string Bin(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

// A whole pipeline on its own database, topics and ports.
class Stack {
 public:
  Stack() {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    db_ = "e2e_" + std::to_string(++count_);
    dir_ = absl::StrCat("/tmp/tidemark-e2e-", getpid(), "-", db_);
    std::filesystem::create_directories(dir_);
    auto dsn = pg->CreateDatabase(db_);
    EXPECT_TRUE(dsn.ok()) << dsn.status();

    broker_ = Start("devbroker", Bin("tools/devbroker/devbroker"),
                    {absl::StrCat("--bootstrap_file=", dir_, "/bootstrap")}, {});
    EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ + "/bootstrap"); },
                        absl::Seconds(10)));
    std::ifstream in(dir_ + "/bootstrap");
    std::getline(in, brokers_);

    StartWriter();
    // The writer owns the schema; the query service logs in to the read-only role.
    EXPECT_TRUE(WaitFor(
        [&] {
          auto r = pg->Psql(db_, "SELECT count(*) FROM pg_roles WHERE rolname = 'tidemark_reader'");
          return r.ok() && *r == "1";
        },
        absl::Seconds(20)));
    EXPECT_TRUE(pg->Psql(db_,
                         "DO \\$\\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname ="
                         " 'tidemark_query') THEN CREATE ROLE tidemark_query LOGIN IN ROLE"
                         " tidemark_reader; END IF; END \\$\\$")
                    .ok());

    ingest_port_ = FreePort();
    ingest_ = Start("ingest", Bin("services/ingest/ingest"),
                    {absl::StrCat("--listen=127.0.0.1:", ingest_port_), "--delivery_timeout=3s"},
                    {{"TIDEMARK_KAFKA_BROKERS", brokers_}});
    query_port_ = FreePort();
    query_ = Start("query", Bin("services/query/query"),
                   {absl::StrCat("--listen=127.0.0.1:", query_port_)},
                   {{"TIDEMARK_PG_DSN", pg->Dsn(db_, "tidemark_query")}});
    ingest_stub_ = v1::IngestService::NewStub(Channel(ingest_port_));
    query_stub_ = v1::QueryService::NewStub(Channel(query_port_));
  }

  ~Stack() {
    if (::testing::Test::HasFailure()) {
      for (auto* p : {broker_.get(), writer_.get(), ingest_.get(), query_.get()}) {
        if (p) std::cerr << "---- " << p->log_path() << "\n" << p->Log().substr(0, 20000) << "\n";
      }
    }
  }

  void StartWriter() {
    writer_ = Start("timestream-writer", Bin("services/timestream-writer/timestream-writer"),
                    {"--batch_max_age=50ms", "--batch_max_records=2000"},
                    {{"TIDEMARK_KAFKA_BROKERS", brokers_}, {"TIDEMARK_PG_DSN", pg->Dsn(db_)}});
  }
  ChildProcess& writer() { return *writer_; }
  ChildProcess& broker() { return *broker_; }
  v1::IngestService::Stub& ingest() { return *ingest_stub_; }
  v1::QueryService::Stub& query() { return *query_stub_; }
  int ingest_port() const { return ingest_port_; }
  const std::string& db() const { return db_; }
  const std::string& dir() const { return dir_; }

  std::unique_ptr<ChildProcess> Start(const std::string& name, const std::string& path,
                                      const std::vector<std::string>& args,
                                      std::map<std::string, std::string> env) {
    env["TIDEMARK_LOG_LEVEL"] = "info";
    auto p = ChildProcess::Start(path, args, env, absl::StrCat(dir_, "/", name, ".log"));
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  /// Every point readable through the query API (all series, all time), by paging.
  int64_t CountPoints() {
    v1::ReadPointsRequest req;
    req.mutable_range()->set_start_us(0);
    req.set_page_size(10000);
    int64_t n = 0;
    do {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::ReadPointsResponse resp;
      grpc::Status s = query_stub_->ReadPoints(&ctx, req, &resp);
      if (!s.ok()) {
        std::cerr << "ReadPoints: " << s.error_code() << " " << s.error_message() << "\n";
        return -1;
      }
      for (const auto& sp : resp.series()) n += sp.points_size();
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    return n;
  }

 private:
  static std::shared_ptr<grpc::Channel> Channel(int port) {
    auto ch = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials());
    ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return ch;
  }

  static inline int count_ = 0;
  std::string db_, dir_, brokers_;
  int ingest_port_ = 0, query_port_ = 0;
  std::unique_ptr<ChildProcess> broker_, writer_, ingest_, query_;
  std::unique_ptr<v1::IngestService::Stub> ingest_stub_;
  std::unique_ptr<v1::QueryService::Stub> query_stub_;
};

// Runs the simulator to completion and returns its JSON summary.
nlohmann::json RunSimulator(Stack& stack, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {absl::StrCat("--ingest=127.0.0.1:", stack.ingest_port()),
                                   "--devices=40", "--batch_size=100"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto sim = stack.Start("simulator", Bin("services/simulator/simulator"), args, {});
  auto code = sim->Wait(absl::Seconds(120));
  EXPECT_TRUE(code.ok() && *code == 0) << sim->Log();
  for (absl::string_view line : absl::StrSplit(sim->Log(), '\n')) {
    if (absl::StartsWith(line, "{")) return nlohmann::json::parse(line);
  }
  ADD_FAILURE() << "no summary in " << sim->Log();
  return {};
}

TEST(Pipeline, SimulatorToQueryReadsEveryAcknowledgedPoint) {
  Stack stack;
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
  auto ahead = pg->Psql(stack.db(), "SELECT count(*) FROM points WHERE time > now() + interval '1 minute'");
  ASSERT_TRUE(ahead.ok());
  EXPECT_EQ(*ahead, "0");

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
  Stack stack;
  std::vector<std::string> args = {absl::StrCat("--ingest=127.0.0.1:", stack.ingest_port()),
                                   "--devices=40", "--batch_size=100", "--rate=1500",
                                   "--duration=20s"};
  auto sim = stack.Start("simulator", Bin("services/simulator/simulator"), args, {});
  for (int kill_round = 0; kill_round < 2; ++kill_round) {
    // Kill only once this writer has stored something more: a kill mid-stream.
    const int64_t before = stack.CountPoints();
    ASSERT_TRUE(WaitFor([&] { return stack.CountPoints() > before; }, absl::Seconds(30)));
    stack.writer().Signal(SIGKILL);
    ASSERT_TRUE(stack.writer().Wait(absl::Seconds(10)).ok());
    stack.StartWriter();
  }
  ASSERT_TRUE(sim->Wait(absl::Seconds(60)).ok());
  nlohmann::json summary;
  for (absl::string_view line : absl::StrSplit(sim->Log(), '\n')) {
    if (absl::StartsWith(line, "{")) summary = nlohmann::json::parse(line);
  }
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
  Stack stack;
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

TEST(Pipeline, WriteStreamIndexesRejectionsAcrossTheStream) {
  Stack stack;
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
}

TEST(Pipeline, IngestAnswersUnavailableWhenKafkaIsGone) {
  Stack stack;
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

TEST(Query, ErrorsAreStatusesWithMessages) {
  Stack stack;
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
