#include "tests/support/stack.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/auth/credentials.h"
#include "gtest/gtest.h"
#include "services/timestream-writer/schema.h"

namespace tidemark::testing {
namespace {

std::string Bin(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

std::shared_ptr<grpc::Channel> Channel(int port, const grpcutil::ClientSecurity& security) {
  auto ch = grpcutil::MakeChannel(absl::StrCat("127.0.0.1:", port), security);
  EXPECT_TRUE(ch.ok()) << ch.status();
  if (!ch.ok()) return nullptr;
  (*ch)->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return *ch;
}

// Certificates, a credentials file with one all-scopes token, and the flags that make ingest
// and query use them.
std::vector<std::string> SecureApi(const std::string& dir, grpcutil::ClientSecurity& client) {
  const std::string certs = dir + "/certs";
  EXPECT_EQ(
      std::system(
          absl::StrCat(TIDEMARK_SOURCE_DIR, "/deploy/certs.sh ", certs, " > /dev/null").c_str()),
      0);
  absl::StatusOr<std::string> token = auth::NewToken();
  EXPECT_TRUE(token.ok());
  std::ofstream(dir + "/credentials") << "token stack-admin sha256:" << auth::TokenSha256(*token)
                                      << " read,write,explicit_version\n";
  client = {.ca_file = certs + "/ca.pem", .token = *token};
  return {absl::StrCat("--tls_cert_file=", certs, "/server.pem"),
          absl::StrCat("--tls_key_file=", certs, "/server-key.pem"),
          absl::StrCat("--tls_client_ca_file=", certs, "/ca.pem"),
          absl::StrCat("--credentials_file=", dir, "/credentials"), "--tls_refresh_interval=1s"};
}

int next_stack = 0;

}  // namespace

nlohmann::json SimulatorSummary(const std::string& log) {
  nlohmann::json summary;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StartsWith(line, "{")) summary = nlohmann::json::parse(line);
  }
  return summary;
}

Stack::Stack(PgCluster& pg, std::vector<std::string> aggregator_flags)
    : Stack(pg, StackOptions{.aggregator_flags = std::move(aggregator_flags)}) {}

Stack::Stack(PgCluster& pg, StackOptions options) : pg_(pg), options_(std::move(options)) {
  db_ = "stack_" + std::to_string(++next_stack);
  dir_ = absl::StrCat("/tmp/tidemark-e2e-", getpid(), "-", db_);
  std::filesystem::create_directories(dir_);
  auto dsn = pg_.CreateDatabase(db_);
  EXPECT_TRUE(dsn.ok()) << dsn.status();

  // The devbroker writes the control file before the bootstrap file.
  broker_ = Start("devbroker", Bin("tools/devbroker/devbroker"),
                  {absl::StrCat("--bootstrap_file=", dir_, "/bootstrap"),
                   absl::StrCat("--brokers=", options_.brokers), "--control_listen=127.0.0.1:0",
                   absl::StrCat("--control_file=", dir_, "/control")},
                  {});
  EXPECT_TRUE(
      WaitFor([&] { return std::filesystem::exists(dir_ + "/bootstrap"); }, absl::Seconds(10)));
  std::ifstream in(dir_ + "/bootstrap");
  std::getline(in, brokers_);
  std::ifstream control_in(dir_ + "/control");
  std::string control;
  std::getline(control_in, control);
  broker_control_ = std::make_unique<BrokerControl>(control);

  StartWriter();
  // The writer owns the schema; the query service logs in to the read-only role.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = pg_.Psql(db_, "SELECT count(*) FROM schema_migrations");
        return r.ok() && *r == absl::StrCat(writer::SchemaMigrations().size());
      },
      absl::Seconds(30)));
  EXPECT_TRUE(pg_.Psql(db_,
                       "DO \\$\\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname ="
                       " 'tidemark_query') THEN CREATE ROLE tidemark_query LOGIN IN ROLE"
                       " tidemark_reader; END IF; END \\$\\$")
                  .ok());

  if (options_.secure) api_flags_ = SecureApi(dir_, client_security_);
  ingest_port_ = FreePort();
  std::vector<std::string> ingest_flags = {absl::StrCat("--listen=127.0.0.1:", ingest_port_),
                                           "--delivery_timeout=3s"};
  ingest_flags.insert(ingest_flags.end(), api_flags_.begin(), api_flags_.end());
  ingest_flags.insert(ingest_flags.end(), options_.ingest_flags.begin(),
                      options_.ingest_flags.end());
  ingest_ = Start("ingest", Bin("services/ingest/ingest"), ingest_flags,
                  {{"TIDEMARK_KAFKA_BROKERS", brokers_}});
  query_port_ = FreePort();
  std::vector<std::string> query_flags = {absl::StrCat("--listen=127.0.0.1:", query_port_)};
  query_flags.insert(query_flags.end(), api_flags_.begin(), api_flags_.end());
  query_ = Start("query", Bin("services/query/query"), query_flags,
                 {{"TIDEMARK_PG_DSN", pg_.Dsn(db_, "tidemark_query")}});
  ingest_stub_ = v1::IngestService::NewStub(Channel(ingest_port_, client_security_));
  query_stub_ = v1::QueryService::NewStub(Channel(query_port_, client_security_));
}

Stack::~Stack() {
  // Processes first (killed), then the directory; a failed test keeps it and prints the logs.
  aggregators_.clear();
  archive_.reset();
  query_.reset();
  ingest_.reset();
  writer_.reset();
  broker_.reset();
  if (!::testing::Test::HasFailure()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    return;
  }
  for (const std::string& path : logs_) {
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content.size() > 20000) content = content.substr(content.size() - 20000);
    std::cerr << "---- " << path << "\n" << content << "\n";
  }
  std::cerr << "logs kept in " << dir_ << "\n";
}

void Stack::StartWriter() {
  writer_ = Start("timestream-writer", Bin("services/timestream-writer/timestream-writer"),
                  {"--batch_max_age=50ms", "--batch_max_records=2000"},
                  {{"TIDEMARK_KAFKA_BROKERS", brokers_}, {"TIDEMARK_PG_DSN", pg_.Dsn(db_)}});
}

void Stack::StartArchive(const std::vector<std::string>& flags,
                         std::map<std::string, std::string> env) {
  archive_.reset();
  env["TIDEMARK_KAFKA_BROKERS"] = brokers_;
  archive_ = Start("archive", Bin("services/archive/archive"), flags, std::move(env));
}

std::string Stack::dsn() const { return pg_.Dsn(db_); }

std::string Stack::Binary(const std::string& relative) { return Bin(relative); }

void Stack::StartAggregator(int n) {
  aggregators_[n] = Start(absl::StrCat("aggregator-", n), Bin("services/aggregator/aggregator"),
                          options_.aggregator_flags, {{"TIDEMARK_KAFKA_BROKERS", brokers_}});
}

std::unique_ptr<ChildProcess> Stack::Start(const std::string& name, const std::string& path,
                                           const std::vector<std::string>& args,
                                           std::map<std::string, std::string> env) {
  env.emplace("TIDEMARK_LOG_LEVEL", "info");  // unless the caller sets one
  // An open API unless the stack is secure (the variable means nothing to other services).
  if (!options_.secure) env.emplace("TIDEMARK_ALLOW_UNAUTHENTICATED", "true");
  const std::string log = absl::StrCat(dir_, "/", name, ".log");
  if (std::find(logs_.begin(), logs_.end(), log) == logs_.end()) logs_.push_back(log);
  auto p = ChildProcess::Start(path, args, env, log);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

std::string Stack::AllLogs() const {
  std::string all;
  for (const std::string& path : logs_) {
    std::ifstream in(path);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

int64_t Stack::CountPoints() {
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

std::unique_ptr<ChildProcess> Stack::StartSimulator(const std::vector<std::string>& args,
                                                    const std::string& name) {
  std::vector<std::string> all = {absl::StrCat("--ingest=127.0.0.1:", ingest_port_)};
  all.insert(all.end(), args.begin(), args.end());
  std::map<std::string, std::string> env;
  if (options_.secure) {
    env["TIDEMARK_TLS_CA_FILE"] = client_security_.ca_file;
    env["TIDEMARK_TOKEN"] = client_security_.token;
  }
  return Start(name, Bin("services/simulator/simulator"), all, env);
}

nlohmann::json Stack::RunSimulator(const std::vector<std::string>& args) {
  auto sim = StartSimulator(args);
  auto code = sim->Wait(absl::Seconds(120));
  EXPECT_TRUE(code.ok() && *code == 0) << sim->Log();
  nlohmann::json summary = SimulatorSummary(sim->Log());
  EXPECT_FALSE(summary.is_null()) << "no summary in " << sim->Log();
  return summary;
}

std::string Stack::Sql(const std::string& sql) {
  auto out = pg_.Psql(db_, sql);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

std::optional<std::string> StreamAnswerBytes(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  const auto answer = trailers.find("tidemark-write-response-bin");
  if (answer == trailers.end()) return std::nullopt;
  return std::string(answer->second.data(), answer->second.size());
}

}  // namespace tidemark::testing
