// Operating the services: health that follows PostgreSQL and Kafka, a port in use as a
// start-up error, --help with every flag's environment variable, and /metrics pages that pass
// promtool and carry every metric the Grafana pipeline dashboard and the alerts use.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using grpc::health::v1::HealthCheckResponse;
using testing::ChildProcess;
using testing::MetricsPort;
using testing::Stack;
using testing::WaitFor;

// gRPC health of `service` at 127.0.0.1:port: the serving status, or the RPC's error code
// as a negative number.
int GrpcHealth(int port, const std::string& service) {
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  return s.ok() ? resp.status() : -static_cast<int>(s.error_code());
}

// HTTP status of GET /health on a metrics port (0 when it does not answer).
int HttpHealth(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(3, 0);
  auto res = client.Get("/health");
  return res ? res->status : 0;
}

std::string Metrics(int port) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a binary to completion; returns its exit code and output.
std::pair<int, std::string> RunBinary(Stack& stack, const std::string& name,
                                      const std::string& binary,
                                      const std::vector<std::string>& args,
                                      std::map<std::string, std::string> env = {}) {
  auto p = stack.Start(name, Stack::Binary(binary), args, std::move(env));
  auto code = p->Wait(absl::Seconds(30));
  return {code.ok() ? *code : -1, p->Log()};
}

constexpr int kServing = HealthCheckResponse::SERVING;
constexpr int kNotServing = HealthCheckResponse::NOT_SERVING;

TEST(Operations, HealthIsNotServingWhilePostgresOrKafkaIsDown) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  stack.StartAggregator(0);
  stack.StartArchive({absl::StrCat("--lake=", stack.dir(), "/lake")});
  const int ingest = stack.ingest_port();
  const int writer = MetricsPort(stack.writer());
  const int aggregator = MetricsPort(stack.aggregator(0));
  const int archive = MetricsPort(stack.archive());
  ASSERT_GT(writer, 0);
  ASSERT_GT(aggregator, 0);
  ASSERT_GT(archive, 0);

  // The query replica of the stack is not reachable by port from here; start one to probe.
  const int query = testing::FreePort();
  auto query_p = stack.Start("query-probed", Stack::Binary("services/query/query"),
                             {absl::StrCat("--listen=127.0.0.1:", query)},
                             {{"TIDEMARK_PG_DSN", pg.Dsn(stack.db(), "tidemark_query")}});

  ASSERT_TRUE(WaitFor(
      [&] {
        return GrpcHealth(ingest, "") == kServing &&
               GrpcHealth(ingest, "tidemark.v1.IngestService") == kServing &&
               GrpcHealth(query, "") == kServing &&
               GrpcHealth(query, "tidemark.v1.QueryService") == kServing &&
               HttpHealth(writer) == 200 && HttpHealth(aggregator) == 200 &&
               HttpHealth(archive) == 200;
      },
      absl::Seconds(30)))
      << "ingest " << GrpcHealth(ingest, "tidemark.v1.IngestService") << " query "
      << GrpcHealth(query, "tidemark.v1.QueryService") << " writer " << HttpHealth(writer)
      << " aggregator " << HttpHealth(aggregator) << " archive " << HttpHealth(archive);
  // A service the server does not have is NOT_FOUND, as the protocol says.
  EXPECT_EQ(GrpcHealth(ingest, "tidemark.v1.QueryService"),
            -static_cast<int>(grpc::StatusCode::NOT_FOUND));

  // PostgreSQL down: query and the writer cannot do their job; ingest still can.
  ASSERT_TRUE(pg.StopImmediate().ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return GrpcHealth(query, "tidemark.v1.QueryService") == kNotServing &&
               GrpcHealth(query, "") == kNotServing && HttpHealth(writer) == 503;
      },
      absl::Seconds(20)))
      << "query " << GrpcHealth(query, "") << " writer " << HttpHealth(writer);
  EXPECT_EQ(GrpcHealth(ingest, "tidemark.v1.IngestService"), kServing);
  // The writer's lag grows while it waits for PostgreSQL, as records arrive (its partitions
  // are paused, so the ends come from the broker, not from fetches). One event first, so that
  // the writer holds a batch it cannot store and pauses; then 3,000 behind it.
  const auto write = [&](int events, const std::string& device) {
    v1::WriteRequest req;
    for (int i = 0; i < events; ++i) {
      v1::Event* e = req.add_events();
      e->set_device_id(absl::StrCat(device, "-", i % 50));
      e->set_time(absl::ToUnixMillis(absl::Now()) - i);
      e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
      (*e->mutable_measures())["power"].set_double_value(i);
    }
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    const grpc::Status s = stack.ingest().Write(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.accepted(), events);
  };
  const auto writer_metric = [&](const std::string& series) {
    const std::string text = Metrics(writer);
    const size_t at = text.find(series + " ");
    double value = -1;
    if (at != std::string::npos) {
      const size_t start = at + series.size() + 1;
      (void)absl::SimpleAtod(text.substr(start, text.find('\n', start) - start), &value);
    }
    return value;
  };
  const std::string raw_lag = "tidemark_writer_consumer_lag_records{loop=\"raw\"}";
  write(1, "lag-first");
  ASSERT_TRUE(WaitFor(
      [&] { return writer_metric("tidemark_writer_store_retries_total{loop=\"raw\"}") > 0; },
      absl::Seconds(30)));
  for (int r = 0; r < 3; ++r) write(1000, "lag-behind");
  EXPECT_TRUE(WaitFor([&] { return writer_metric(raw_lag) >= 3000; }, absl::Seconds(30)))
      << raw_lag << " " << writer_metric(raw_lag);
  // A writer started now waits for PostgreSQL with its metrics and health up, NOT_SERVING
  // and saying what it waits for (not a replica that looks down).
  auto late_writer = stack.Start(
      "writer-started-without-postgres",
      Stack::Binary("services/timestream-writer/timestream-writer"), {"--group_id=late-writer"},
      {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}, {"TIDEMARK_PG_DSN", pg.Dsn(stack.db())}});
  const int late_writer_port = MetricsPort(*late_writer);
  ASSERT_GT(late_writer_port, 0) << late_writer->Log();
  EXPECT_EQ(HttpHealth(late_writer_port), 503);
  EXPECT_TRUE(absl::StrContains(Metrics(late_writer_port), "tidemark_serving 0"));
  {
    httplib::Client client("127.0.0.1", late_writer_port);
    auto res = client.Get("/health");
    ASSERT_TRUE(res);
    EXPECT_TRUE(absl::StrContains(res->body, "opening the store")) << res->body;
  }
  ASSERT_TRUE(pg.StartAgain().ok());
  EXPECT_TRUE(WaitFor([&] { return writer_metric(raw_lag) == 0; }, absl::Seconds(60)))
      << "and falls once PostgreSQL is back: " << writer_metric(raw_lag);
  EXPECT_TRUE(WaitFor([&] { return HttpHealth(late_writer_port) == 200; }, absl::Seconds(60)))
      << late_writer->Log();
  EXPECT_TRUE(WaitFor(
      [&] {
        return GrpcHealth(query, "tidemark.v1.QueryService") == kServing &&
               HttpHealth(writer) == 200;
      },
      absl::Seconds(30)))
      << "query " << GrpcHealth(query, "") << " writer " << HttpHealth(writer);

  // Kafka down: ingest cannot acknowledge writes, the consumers cannot consume.
  stack.broker().Signal(SIGKILL);
  EXPECT_TRUE(WaitFor(
      [&] {
        return GrpcHealth(ingest, "tidemark.v1.IngestService") == kNotServing &&
               GrpcHealth(ingest, "") == kNotServing && HttpHealth(writer) == 503 &&
               HttpHealth(aggregator) == 503 && HttpHealth(archive) == 503;
      },
      absl::Seconds(30)))
      << "ingest " << GrpcHealth(ingest, "") << " writer " << HttpHealth(writer) << " aggregator "
      << HttpHealth(aggregator) << " archive " << HttpHealth(archive);
  EXPECT_EQ(GrpcHealth(query, "tidemark.v1.QueryService"), kServing);
}

// POSTs to the development broker's fault controls (tools/devbroker/README.md).
bool BrokerControl(const std::string& control, const std::string& path) {
  const size_t colon = control.rfind(':');
  httplib::Client client(control.substr(0, colon), std::stoi(control.substr(colon + 1)));
  auto res = client.Post(path, "", "text/plain");
  return res && res->status == 200;
}

TEST(Operations, HealthReturnsToServingWhenKafkaReturns) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  // A broker of its own, with fault controls, for an ingest and an aggregator.
  const std::string dir = stack.dir() + "/faulty-broker";
  std::filesystem::create_directories(dir);
  auto broker = stack.Start("devbroker-controlled", Stack::Binary("tools/devbroker/devbroker"),
                            {"--bootstrap_file=" + dir + "/bootstrap",
                             "--control_listen=127.0.0.1:0", "--control_file=" + dir + "/control"},
                            {});
  ASSERT_TRUE(
      WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); }, absl::Seconds(20)));
  std::string brokers = ReadFile(dir + "/bootstrap"), control = ReadFile(dir + "/control");
  while (!brokers.empty() && brokers.back() == '\n') brokers.pop_back();
  while (!control.empty() && control.back() == '\n') control.pop_back();
  const int ingest = testing::FreePort();
  auto ingest_p = stack.Start("ingest-controlled", Stack::Binary("services/ingest/ingest"),
                              {absl::StrCat("--listen=127.0.0.1:", ingest)},
                              {{"TIDEMARK_KAFKA_BROKERS", brokers}});
  auto aggregator_p =
      stack.Start("aggregator-controlled", Stack::Binary("services/aggregator/aggregator"), {},
                  {{"TIDEMARK_KAFKA_BROKERS", brokers}});
  const int aggregator = MetricsPort(*aggregator_p);
  ASSERT_GT(aggregator, 0);
  auto both = [&](int grpc_status, int http_status) {
    return GrpcHealth(ingest, "tidemark.v1.IngestService") == grpc_status &&
           HttpHealth(aggregator) == http_status;
  };
  ASSERT_TRUE(WaitFor([&] { return both(kServing, 200); }, absl::Seconds(30)));

  ASSERT_TRUE(BrokerControl(control, "/brokers/1/down"));
  EXPECT_TRUE(WaitFor([&] { return both(kNotServing, 503); }, absl::Seconds(30)))
      << "ingest " << GrpcHealth(ingest, "") << " aggregator " << HttpHealth(aggregator);
  ASSERT_TRUE(BrokerControl(control, "/brokers/1/up"));
  EXPECT_TRUE(WaitFor([&] { return both(kServing, 200); }, absl::Seconds(30)))
      << "ingest " << GrpcHealth(ingest, "") << " aggregator " << HttpHealth(aggregator);
}

// SIGTERM ends open subscriptions with UNAVAILABLE (their clients resume with their token)
// at once, rather than letting the grace period run out and cancelling them.
TEST(Operations, QueryShutdownEndsSubscriptionsWithUnavailable) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  const int port = testing::FreePort();
  auto query_p = stack.Start("query-shutdown", Stack::Binary("services/query/query"),
                             {absl::StrCat("--listen=127.0.0.1:", port)},
                             {{"TIDEMARK_PG_DSN", pg.Dsn(stack.db(), "tidemark_query")}});
  ASSERT_TRUE(WaitFor([&] { return GrpcHealth(port, "") == kServing; }, absl::Seconds(30)));
  auto stub = v1::QueryService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
  v1::SubscribeResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  const absl::Time signalled = absl::Now();
  query_p->Signal(SIGTERM);
  while (reader->Read(&resp)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "resume_token")) << status.error_message();
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(3)) << "not at the end of the grace period";
  const absl::StatusOr<int> code = query_p->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

// The CLI tells its own mistakes from the service's state: a bad address or TLS file is a
// usage error (exit 2), not NOT_SERVING (which a container's health check would take for a
// sick service); an http:// probe honours a sub-second timeout; and a subscription stopped
// before any was confirmed (a wrong address) is not a success.
TEST(Operations, CliMistakesAreNotTheServicesState) {
  Stack stack(testing::SharedPgCluster());
  const int writer = MetricsPort(stack.writer());
  ASSERT_GT(writer, 0);
  const auto [https_code, https_out] =
      RunBinary(stack, "health-https", "tools/cli/tidemark", {"health", "https://127.0.0.1:1"});
  EXPECT_EQ(https_code, 2) << https_out;
  EXPECT_FALSE(absl::StrContains(https_out, "NOT_SERVING")) << https_out;
  // gRPC's own schemes stay targets.
  const auto [dns_code, dns_out] =
      RunBinary(stack, "health-dns-scheme", "tools/cli/tidemark",
                {"health", absl::StrCat("dns:///127.0.0.1:", stack.ingest_port()),
                 "--service=tidemark.v1.IngestService"});
  EXPECT_EQ(dns_code, 0) << dns_out;
  const auto [ca_code, ca_out] =
      RunBinary(stack, "health-bad-ca", "tools/cli/tidemark",
                {"health", absl::StrCat("127.0.0.1:", stack.ingest_port()),
                 "--tls_ca_file=/nonexistent/ca.pem"});
  EXPECT_EQ(ca_code, 2) << ca_out;
  EXPECT_TRUE(absl::StrContains(ca_out, "tls_ca_file")) << ca_out;
  ASSERT_TRUE(WaitFor([&] { return HttpHealth(writer) == 200; }, absl::Seconds(30)));
  const auto [http_code, http_out] = RunBinary(
      stack, "health-http-fast", "tools/cli/tidemark",
      {"health", absl::StrCat("http://127.0.0.1:", writer, "/health"), "--timeout=800ms"});
  EXPECT_EQ(http_code, 0) << http_out;
  // Rows that could not be written are a failure, not success.
  auto full =
      stack.Start("cli-to-dev-full", "/bin/sh",
                  {"-c", absl::StrCat(Stack::Binary("tools/cli/tidemark"),
                                      " series --format=csv --query=127.0.0.1:", stack.query_port(),
                                      " --limit=0 > /dev/full")},
                  {});
  const absl::StatusOr<int> full_code = full->Wait(absl::Seconds(30));
  ASSERT_TRUE(full_code.ok()) << full_code.status();
  EXPECT_EQ(*full_code, 1) << full->Log();
  EXPECT_TRUE(absl::StrContains(full->Log(), "cannot write to stdout")) << full->Log();
  // token names the flag that is wrong, not a field of a credentials line.
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad_tokens = {
      {{"token", "--name=fleet north", "--scopes=read"}, "--name"},
      {{"token", "--name=fleet", "--scopes=read", "--expires=2030-01-01"}, "--expires"},
      {{"token", "--name=fleet", "--scopes=read", "--expires=2001-01-01T00:00:00Z"},
       "already past"},
      {{"token", "--name=fleet", "--scopes=rad"}, "--scopes"},
      {{"token", "--name=fleet", "--scopes=read", "extra"}, "left over"}};
  for (const auto& [args, needle] : bad_tokens) {
    const auto [token_code, token_out] = RunBinary(stack, "token", "tools/cli/tidemark", args);
    EXPECT_EQ(token_code, 2) << absl::StrJoin(args, " ") << "\n" << token_out;
    EXPECT_TRUE(absl::StrContains(token_out, needle)) << absl::StrJoin(args, " ") << "\n"
                                                      << token_out;
  }

  auto subscriber = stack.Start(
      "subscribe-nowhere", Stack::Binary("tools/cli/tidemark"),
      {"subscribe", absl::StrCat("--query=127.0.0.1:", testing::FreePort()), "--measure=speed"},
      {});
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(subscriber->Log(), "resuming in"); },
                      absl::Seconds(20)))
      << subscriber->Log();
  subscriber->Signal(SIGINT);
  const absl::StatusOr<int> code = subscriber->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1) << subscriber->Log();
  EXPECT_TRUE(absl::StrContains(subscriber->Log(), "before the query service confirmed"))
      << subscriber->Log();
}

TEST(Operations, APortInUseIsAStartUpError) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  ASSERT_TRUE(
      WaitFor([&] { return GrpcHealth(stack.ingest_port(), "") == kServing; }, absl::Seconds(30)));
  const int metrics = MetricsPort(stack.ingest_process());
  ASSERT_GT(metrics, 0);

  // The gRPC port of a running ingest: the second process must not serve beside it.
  const auto [grpc_code, grpc_log] =
      RunBinary(stack, "ingest-same-port", "services/ingest/ingest",
                {absl::StrCat("--listen=127.0.0.1:", stack.ingest_port()), "--metrics_port=0"},
                {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}});
  EXPECT_EQ(grpc_code, 1) << grpc_log;
  EXPECT_TRUE(absl::StrContains(grpc_log, "cannot listen for gRPC")) << grpc_log;

  // The metrics port of a running service.
  const auto [metrics_code, metrics_log] =
      RunBinary(stack, "query-same-metrics-port", "services/query/query",
                {"--listen=127.0.0.1:0", absl::StrCat("--metrics_port=", metrics)},
                {{"TIDEMARK_PG_DSN", pg.Dsn(stack.db(), "tidemark_query")}});
  EXPECT_EQ(metrics_code, 1) << metrics_log;
  EXPECT_TRUE(absl::StrContains(metrics_log, "cannot bind metrics")) << metrics_log;
  // The first process is unharmed.
  EXPECT_EQ(GrpcHealth(stack.ingest_port(), "tidemark.v1.IngestService"), kServing);
}

TEST(Operations, HelpListsEveryFlagAndABadValueIsRefusedByName) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"services/ingest/ingest", {"--listen=", "(TIDEMARK_LISTEN)", "(TIDEMARK_KAFKA_BROKERS)"}},
      {"services/query/query", {"--workers=", "(TIDEMARK_WORKERS)", "(TIDEMARK_PG_DSN)"}},
      {"services/aggregator/aggregator", {"--windows=", "(TIDEMARK_WINDOWS)"}},
      {"services/timestream-writer/timestream-writer",
       {"--batch_max_records=", "(TIDEMARK_BATCH_MAX_RECORDS)", "(TIDEMARK_METRICS_PORT)"}},
      {"services/archive/archive", {"--lake=", "(TIDEMARK_LAKE)"}},
      {"services/simulator/simulator", {"--rate=", "(TIDEMARK_RATE)"}},
      {"tools/cli/tidemark", {"--query=", "(TIDEMARK_QUERY)", "health"}},
      {"tools/devbroker/devbroker", {"--brokers=", "(TIDEMARK_BROKERS)"}},
  };
  for (const auto& [binary, needles] : expected) {
    const auto [code, out] = RunBinary(stack, "help", binary, {"--help"});
    EXPECT_EQ(code, 0) << binary << "\n" << out;
    EXPECT_FALSE(absl::StrContains(out, "No flags matched")) << binary;
    EXPECT_FALSE(absl::StrContains(out, "--flagfile")) << binary << ": absl's own flags listed";
    for (const std::string& n : needles) {
      EXPECT_TRUE(absl::StrContains(out, n)) << binary << " --help lacks " << n << "\n" << out;
    }
    // Every setting is known to every program, so that none takes another's variable in a
    // shared environment for a misspelling of its own.
    static const std::regex variable(R"(\(TIDEMARK_([A-Z0-9_]+)\))");
    for (auto it = std::sregex_iterator(out.begin(), out.end(), variable);
         it != std::sregex_iterator(); ++it) {
      const std::string flag = absl::AsciiStrToLower((*it)[1].str());
      EXPECT_TRUE(config::IsTidemarkSetting(flag))
          << binary << ": --" << flag << " is missing from kTidemarkSettings (common/config)";
    }
  }
  // A value outside a setting's choices stops the service at start, naming the setting, its
  // environment variable and the choices.
  const auto [code, log] = RunBinary(stack, "bad-compression", "services/ingest/ingest", {},
                                     {{"TIDEMARK_KAFKA_COMPRESSION", "brotli"}});
  EXPECT_EQ(code, 2) << log;
  for (const char* n :
       {"--kafka_compression", "TIDEMARK_KAFKA_COMPRESSION", "brotli", "lz4, zstd"}) {
    EXPECT_TRUE(absl::StrContains(log, n)) << n << "\n" << log;
  }
  // Window settings the engine cannot run with (a window shorter than the microseconds points
  // carry, a negative lateness or out-of-orderness) are refused by name, not crashed on.
  const std::vector<std::pair<std::string, std::string>> bad_aggregator = {
      {"TIDEMARK_WINDOWS", "500ns"},
      {"TIDEMARK_WINDOWS", "1500ns"},
      {"TIDEMARK_ALLOWED_LATENESS", "-1m"},
      {"TIDEMARK_MAX_OUT_OF_ORDERNESS", "-5s"}};
  for (const auto& [variable, value] : bad_aggregator) {
    const auto [agg_code, agg_log] =
        RunBinary(stack, absl::StrCat("bad-", variable, value), "services/aggregator/aggregator",
                  {}, {{variable, value}});
    EXPECT_EQ(agg_code, 2) << variable << "=" << value << "\n" << agg_log;
    EXPECT_TRUE(absl::StrContains(agg_log, variable)) << agg_log;
  }
  // Values librdkafka would take to mean "no bound" (0 queued events, a delivery timeout of
  // 0 ms), and a metrics port that is no port.
  const std::vector<std::pair<std::string, std::string>> bad_ingest = {
      {"TIDEMARK_MAX_QUEUED_EVENTS", "0"},
      {"TIDEMARK_DELIVERY_TIMEOUT", "500us"},
      {"TIDEMARK_METRICS_PORT", "70000"}};
  for (const auto& [variable, value] : bad_ingest) {
    const auto [ingest_code, ingest_log] =
        RunBinary(stack, absl::StrCat("bad-", variable, value), "services/ingest/ingest", {},
                  {{variable, value}});
    EXPECT_EQ(ingest_code, 2) << variable << "=" << value << "\n" << ingest_log;
    EXPECT_TRUE(absl::StrContains(ingest_log, variable)) << ingest_log;
  }
  // A topic name the broker would refuse only when the first record is sent.
  const auto [topic_code, topic_log] =
      RunBinary(stack, "bad-topic", "services/timestream-writer/timestream-writer", {},
                {{"TIDEMARK_LATE_TOPIC", "tidemark late"}});
  EXPECT_EQ(topic_code, 2) << topic_log;
  EXPECT_TRUE(absl::StrContains(topic_log, "TIDEMARK_LATE_TOPIC")) << topic_log;
  // An unknown flag is a setting error too (absl alone exits 1 without a hint), naming the
  // flag meant; a misspelled variable, which used to leave the default in force without a
  // word, is named with the one meant.
  const auto [flag_code, flag_log] =
      RunBinary(stack, "unknown-flag", "services/aggregator/aggregator", {"--allowed_latenes=5m"},
                {{"TIDEMARK_IDLE_TIMOUT", "1m"}});
  EXPECT_EQ(flag_code, 2) << flag_log;
  EXPECT_TRUE(absl::StrContains(flag_log, "did you mean --allowed_lateness?")) << flag_log;
  EXPECT_TRUE(absl::StrContains(flag_log,
                                "TIDEMARK_IDLE_TIMOUT sets nothing; did you mean "
                                "TIDEMARK_IDLE_TIMEOUT?"))
      << flag_log;
  // A log level that names none logs at info and says so, instead of silencing the service.
  const auto [level_code, level_log] =
      RunBinary(stack, "bad-log-level", "services/ingest/ingest", {},
                {{"TIDEMARK_LOG_LEVEL", "information"}, {"TIDEMARK_KAFKA_COMPRESSION", "brotli"}});
  EXPECT_EQ(level_code, 2) << level_log;
  EXPECT_TRUE(absl::StrContains(level_log, "TIDEMARK_LOG_LEVEL")) << level_log;
  EXPECT_TRUE(absl::StrContains(level_log, "TIDEMARK_KAFKA_COMPRESSION"))
      << "the bad setting is still named\n"
      << level_log;
}

// Metric names a PromQL expression uses (our own and the process_* ones).
std::set<std::string> MetricNamesIn(const std::string& text) {
  std::set<std::string> names;
  static const std::regex name(R"(\b((tidemark|process)_[a-z_]+)\b)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it) {
    std::string n = (*it)[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(n, suffix) && !absl::EndsWith(n, "_total")) {
        n = n.substr(0, n.size() - strlen(suffix));
      }
    }
    names.insert(n);
  }
  return names;
}

TEST(Operations, MetricsPassPromtoolAndCarryWhatTheDashboardAndAlertsUse) {
  const std::string promtool = "/usr/bin/promtool";
  ASSERT_TRUE(std::filesystem::exists(promtool))
      << "promtool missing (Debian's prometheus package; scripts/install-deps.sh installs it)";
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg, std::vector<std::string>{"--windows=1m", "--idle_timeout=2s"});
  stack.StartAggregator(0);
  stack.StartArchive({absl::StrCat("--lake=", stack.dir(), "/lake"), "--batch_max_age=1s"});
  const nlohmann::json summary =
      stack.RunSimulator({"--rate=2000", "--max_records=2000", "--duration=30s"});
  ASSERT_GT(static_cast<int64_t>(summary["accepted"]), 0);
  // Lag gauges and watermarks exist once the consumers have their partitions.
  std::map<std::string, int> ports = {
      {"ingest", MetricsPort(stack.ingest_process())},
      {"timestream-writer", MetricsPort(stack.writer())},
      {"aggregator", MetricsPort(stack.aggregator(0))},
      {"archive", MetricsPort(stack.archive())},
  };
  const int query = testing::FreePort();
  auto query_p = stack.Start("query-metrics", Stack::Binary("services/query/query"),
                             {absl::StrCat("--listen=127.0.0.1:", query)},
                             {{"TIDEMARK_PG_DSN", pg.Dsn(stack.db(), "tidemark_query")}});
  ports["query"] = MetricsPort(*query_p);
  // Watermark gauges appear per partition once the aggregator has joined its group.
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(Metrics(ports["aggregator"]),
                                 "tidemark_aggregator_watermark_lag_seconds{");
      },
      absl::Seconds(60)));

  // Partition maintenance ran on its own thread, for both tables.
  for (const char* table : {"points", "aggregates"}) {
    const std::string gauge = absl::StrCat(
        "tidemark_writer_maintenance_last_success_timestamp_seconds{table=\"", table, "\"} ");
    EXPECT_TRUE(WaitFor(
        [&] {
          const std::string page = Metrics(ports["timestream-writer"]);
          const size_t at = page.find(gauge);
          return at != std::string::npos && page.compare(at + gauge.size(), 2, "0\n") != 0;
        },
        absl::Seconds(60)))
        << table;
  }

  std::set<std::string> exported;
  for (const auto& [service, port] : ports) {
    ASSERT_GT(port, 0) << service;
    std::string page;
    ASSERT_TRUE(WaitFor([&] { return !(page = Metrics(port)).empty(); }, absl::Seconds(10)))
        << service;
    const std::string file = absl::StrCat(stack.dir(), "/", service, ".metrics");
    std::ofstream(file) << page;
    const std::string out = absl::StrCat(stack.dir(), "/", service, ".promtool");
    const int rc =
        std::system(absl::StrCat(promtool, " check metrics < ", file, " > ", out, " 2>&1").c_str());
    EXPECT_EQ(rc, 0) << service << ": promtool check metrics:\n" << ReadFile(out);
    for (const char* p : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                          "process_start_time_seconds", "process_open_fds", "tidemark_build_info{",
                          "tidemark_serving "}) {
      EXPECT_TRUE(absl::StrContains(page, p)) << service << " lacks " << p;
    }
    EXPECT_TRUE(absl::StrContains(page, absl::StrCat("service=\"", service, "\"")))
        << service << " build_info names another service";
    for (absl::string_view line : absl::StrSplit(page, '\n')) {
      if (line.empty() || line[0] == '#') continue;
      const std::string n(line.substr(0, line.find_first_of("{ ")));
      for (const std::string& m : MetricNamesIn(n)) exported.insert(m);
    }
  }
  const std::string dashboard =
      ReadFile(TIDEMARK_SOURCE_DIR "/deploy/grafana/provisioning/dashboards/pipeline.json");
  const std::string alerts = ReadFile(TIDEMARK_SOURCE_DIR "/deploy/prometheus/alerts.yml");
  ASSERT_FALSE(dashboard.empty());
  ASSERT_FALSE(alerts.empty());
  for (const auto& [what, text] :
       {std::pair{"dashboard", dashboard}, std::pair{"alerts", alerts}}) {
    const std::set<std::string> used = MetricNamesIn(text);
    EXPECT_GT(used.size(), 5u) << what;
    for (const std::string& n : used) {
      EXPECT_TRUE(exported.contains(n)) << what << " uses " << n << ", which no service exports";
    }
  }
}

// A test or benchmark that stops at a failed step with exit() skips the destructors that stop
// its children; they must not outlive it (a broker left running takes a core from what runs
// next).
TEST(Operations, AProgramEndingEarlyLeavesNoChildRunning) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Named without this process's pid: the death test runs in a fresh process of this binary.
  const std::string pid_file = ::testing::TempDir() + "/operations-ending-early-child.pid";
  std::filesystem::remove(pid_file);
  EXPECT_EXIT(
      {
        auto child = testing::ChildProcess::Start("/bin/sleep", {"600"}, {}, "/dev/null");
        if (!child.ok()) std::exit(1);
        std::ofstream(pid_file) << (*child)->pid();
        std::exit(7);  // as bench::Must does: no destructor runs
      },
      ::testing::ExitedWithCode(7), "");
  pid_t pid = 0;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0);
  const int signalled = kill(pid, 0);
  const int error = errno;
  EXPECT_EQ(signalled, -1) << "pid " << pid << " (sleep 600) is still running";
  EXPECT_EQ(error, ESRCH);
}

}  // namespace
}  // namespace tidemark::e2e
