// The security matrix over the real binaries: TLS, mutual TLS, bearer tokens with scopes,
// revocation and expiry, per-record refusals for devices outside a fleet and for explicit
// versions, health and reflection, certificate rotation without a restart, SQL-injection
// strings stored and read back byte-exact, and no secret in any log line.
#include "common/grpc/security.h"

#include <filesystem>
#include <fstream>
#include <future>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/credentials.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using grpcutil::ClientSecurity;
using testing::Stack;
using testing::WaitFor;

// A token and its credentials-file line.
struct Grant {
  std::string token;
  std::string line;
};

Grant MakeGrant(const std::string& name, const std::string& scopes,
                const std::string& expires = "") {
  absl::StatusOr<std::string> token = auth::NewToken();
  EXPECT_TRUE(token.ok());
  std::string line =
      absl::StrCat("token ", name, " sha256:", auth::TokenSha256(*token), " ", scopes);
  if (!expires.empty()) absl::StrAppend(&line, " expires=", expires);
  return {*token, line};
}

std::shared_ptr<grpc::Channel> ChannelTo(int port, const ClientSecurity& security) {
  auto channel = grpcutil::MakeChannel(absl::StrCat("127.0.0.1:", port), security);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return *channel;
}

v1::Event Reading(const std::string& device, double value) {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(absl::ToUnixMicros(absl::Now()));
  e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(value);
  return e;
}

struct WriteResult {
  grpc::Status status;
  v1::WriteResponse response;
};

WriteResult Write(int port, const ClientSecurity& security, std::vector<v1::Event> events) {
  auto stub = v1::IngestService::NewStub(ChannelTo(port, security));
  v1::WriteRequest req;
  for (v1::Event& e : events) *req.add_events() = std::move(e);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  WriteResult r;
  r.status = stub->Write(&ctx, req, &r.response);
  return r;
}

grpc::Status Read(int port, const ClientSecurity& security) {
  auto stub = v1::QueryService::NewStub(ChannelTo(port, security));
  v1::ListSeriesRequest req;
  v1::ListSeriesResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub->ListSeries(&ctx, req, &resp);
}

// WriteStream of one event: the status of the whole stream.
grpc::Status WriteStream(int port, const ClientSecurity& security) {
  auto stub = v1::IngestService::NewStub(ChannelTo(port, security));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WriteResponse resp;
  auto writer = stub->WriteStream(&ctx, &resp);
  v1::WriteRequest req;
  *req.add_events() = Reading("stream-device", 1);
  writer->Write(req);
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status Subscribe(int port, const ClientSecurity& security) {
  auto stub = v1::QueryService::NewStub(ChannelTo(port, security));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::SubscribeRequest req;
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  while (reader->Read(&resp)) {
  }
  return reader->Finish();
}

int HealthOf(int port, const ClientSecurity& security) {
  auto stub = grpc::health::v1::Health::NewStub(ChannelTo(port, security));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  return s.ok() ? resp.status() : -static_cast<int>(s.error_code());
}

// A call to the reflection service's method; UNIMPLEMENTED when reflection is off.
grpc::StatusCode ReflectionCall(int port, const ClientSecurity& security) {
  grpc::GenericStub stub(ChannelTo(port, security));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {},
                 &request, &response, [&done](grpc::Status s) { done.set_value(s); });
  return done.get_future().get().error_code();
}

std::vector<std::string> Reasons(const v1::WriteResponse& r) {
  std::vector<std::string> out;
  for (const auto& rej : r.rejected()) out.push_back(v1::RejectReason_Name(rej.reason()));
  return out;
}

// The value of one sample on a service's /metrics page; -1 when absent.
double Sample(testing::ChildProcess& service, const std::string& sample) {
  httplib::Client client("127.0.0.1", testing::MetricsPort(service));
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const size_t at = res->body.find(sample + " ");
  return at == std::string::npos ? -1 : std::stod(res->body.substr(at + sample.size() + 1));
}

void WriteCredentials(const std::string& path, const std::vector<std::string>& lines) {
  const std::string tmp = path + ".new";
  {
    std::ofstream out(tmp);
    for (const std::string& l : lines) out << l << "\n";
  }
  std::filesystem::rename(tmp, path);  // as an operator replaces the file: atomically
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack(testing::SharedPgCluster(), testing::StackOptions{.secure = true});
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static Stack* stack_;
};
Stack* SecurityTest::stack_ = nullptr;

TEST_F(SecurityTest, EachCredentialIsRefusedWithTheRightStatusAndTheRightOneSucceeds) {
  Stack& stack = *stack_;
  const std::string ca = stack.certs_dir() + "/ca.pem";
  const Grant admin{stack.client_security().token, ""};
  const Grant writer = MakeGrant("writer", "write");
  const Grant reader = MakeGrant("reader", "read");
  const Grant fleet = MakeGrant("fleet-north", "write:north-");
  const Grant versions = MakeGrant("versioned", "write,explicit_version");
  const Grant expired = MakeGrant("expired", "read,write", "2020-01-01T00:00:00Z");
  const Grant revoked = MakeGrant("revoked", "read,write");
  std::ifstream admin_in(stack.credentials_file());
  std::string admin_line;
  std::getline(admin_in, admin_line);
  std::vector<std::string> lines = {
      admin_line,    writer.line,  reader.line,  fleet.line,
      versions.line, expired.line, revoked.line, "cert ops tidemark-client read,write"};
  WriteCredentials(stack.credentials_file(), lines);

  const int ingest = stack.ingest_port();
  const int query = stack.query_port();
  auto tls = [&](const std::string& token) {
    return ClientSecurity{.ca_file = ca, .token = token};
  };

  // The file was just replaced; the services re-read it within about a second.
  ASSERT_TRUE(
      WaitFor([&] { return Write(ingest, tls(writer.token), {Reading("d-1", 1)}).status.ok(); },
              absl::Seconds(15)));

  // No token, a wrong token, an expired token: UNAUTHENTICATED, on both APIs and streams.
  for (const ClientSecurity& bad : {tls(""), tls("tdm_not-a-token"), tls(expired.token)}) {
    SCOPED_TRACE(bad.token);
    EXPECT_EQ(Write(ingest, bad, {Reading("d-1", 1)}).status.error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(WriteStream(ingest, bad).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Read(query, bad).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Subscribe(query, bad).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // A header that is not "Bearer <token>" is refused too.
  {
    auto stub = v1::QueryService::NewStub(ChannelTo(query, tls("")));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Basic ", reader.token));
    v1::ListSeriesResponse resp;
    EXPECT_EQ(stub->ListSeries(&ctx, v1::ListSeriesRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  // A read token writing, a write token reading: PERMISSION_DENIED; the right scope works.
  EXPECT_EQ(Write(ingest, tls(reader.token), {Reading("d-1", 1)}).status.error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(WriteStream(ingest, tls(reader.token)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Read(query, tls(writer.token)).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Subscribe(query, tls(writer.token)).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Read(query, tls(reader.token)).ok());
  EXPECT_TRUE(WriteStream(ingest, tls(writer.token)).ok());
  EXPECT_EQ(Subscribe(query, tls(reader.token)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);  // served until the client's deadline

  // A fleet token: its own devices accepted, another fleet's rejected per record.
  WriteResult fleet_write =
      Write(ingest, tls(fleet.token), {Reading("north-7", 1), Reading("south-7", 2)});
  ASSERT_TRUE(fleet_write.status.ok()) << fleet_write.status.error_message();
  EXPECT_EQ(fleet_write.response.accepted(), 1);
  ASSERT_EQ(fleet_write.response.rejected_size(), 1);
  EXPECT_EQ(fleet_write.response.rejected(0).index(), 1);
  EXPECT_EQ(fleet_write.response.rejected(0).reason(), v1::REJECT_REASON_DEVICE_NOT_PERMITTED);

  // An explicit version needs its scope.
  v1::Event pinned = Reading("d-2", 3);
  pinned.set_version(std::numeric_limits<int64_t>::max());
  WriteResult without = Write(ingest, tls(writer.token), {pinned});
  ASSERT_TRUE(without.status.ok());
  EXPECT_EQ(without.response.accepted(), 0);
  EXPECT_EQ(Reasons(without.response),
            std::vector<std::string>{"REJECT_REASON_VERSION_NOT_PERMITTED"});
  WriteResult with = Write(ingest, tls(versions.token), {pinned});
  ASSERT_TRUE(with.status.ok());
  EXPECT_EQ(with.response.accepted(), 1);

  // A client certificate from the stack's CA, listed in the file: authenticated without a
  // token. One from another CA: the handshake fails, so the call never reaches the service.
  ClientSecurity cert{.ca_file = ca,
                      .cert_file = stack.certs_dir() + "/client.pem",
                      .key_file = stack.certs_dir() + "/client-key.pem"};
  EXPECT_TRUE(Read(query, cert).ok());
  EXPECT_TRUE(Write(ingest, cert, {Reading("d-3", 1)}).status.ok());
  const std::string other = stack.dir() + "/other-ca";
  ASSERT_EQ(
      std::system(
          absl::StrCat(TIDEMARK_SOURCE_DIR, "/deploy/certs.sh ", other, " > /dev/null").c_str()),
      0);
  ClientSecurity foreign{.ca_file = ca,
                         .cert_file = other + "/client.pem",
                         .key_file = other + "/client-key.pem",
                         .token = reader.token};
  EXPECT_EQ(Read(query, foreign).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A server certificate from another CA is not trusted by the client either.
  EXPECT_EQ(
      Read(query, ClientSecurity{.ca_file = other + "/ca.pem", .token = reader.token}).error_code(),
      grpc::StatusCode::UNAVAILABLE);

  // Plaintext to a TLS port fails; no data gets in.
  EXPECT_EQ(Write(ingest, ClientSecurity{.token = writer.token}, {Reading("plain", 1)})
                .status.error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Health stays open (TLS, no token); reflection is off.
  EXPECT_EQ(HealthOf(ingest, tls("")), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(HealthOf(query, tls("")), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(ReflectionCall(query, tls(reader.token)), grpc::StatusCode::UNIMPLEMENTED);

  // Refusals are counted by reason, for dashboards and alerts.
  for (const char* reason : {"unauthenticated", "permission_denied"}) {
    EXPECT_GT(Sample(stack.ingest_process(),
                     absl::StrCat("tidemark_ingest_auth_refused_total{reason=\"", reason, "\"}")),
              0)
        << reason;
  }

  // Revocation: the token works, is removed from the file, and stops working without a
  // restart.
  EXPECT_TRUE(Read(query, tls(revoked.token)).ok());
  // A stream opened before the revocation stops writing with it too.
  auto stream_stub = v1::IngestService::NewStub(ChannelTo(ingest, tls(revoked.token)));
  grpc::ClientContext stream_ctx;
  stream_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::WriteResponse stream_resp;
  auto open_stream = stream_stub->WriteStream(&stream_ctx, &stream_resp);
  v1::WriteRequest before_revocation;
  *before_revocation.add_events() = Reading("d-1", 2);
  ASSERT_TRUE(open_stream->Write(before_revocation));
  // So does a subscription: the next change it would be sent ends it.
  auto subscribe_stub = v1::QueryService::NewStub(ChannelTo(query, tls(revoked.token)));
  grpc::ClientContext subscribe_ctx;
  subscribe_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto subscription = subscribe_stub->Subscribe(&subscribe_ctx, v1::SubscribeRequest());
  v1::SubscribeResponse confirmation;
  ASSERT_TRUE(subscription->Read(&confirmation));
  // And one to which no change ever comes (a series that does not exist) ends as well.
  grpc::ClientContext idle_ctx;
  idle_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubscribeRequest nothing;
  nothing.mutable_selector()->add_series_ids(987'654'321);
  auto idle = subscribe_stub->Subscribe(&idle_ctx, nothing);
  ASSERT_TRUE(idle->Read(&confirmation));
  lines.erase(std::find(lines.begin(), lines.end(), revoked.line));
  WriteCredentials(stack.credentials_file(), lines);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Read(query, tls(revoked.token)).error_code() == grpc::StatusCode::UNAUTHENTICATED &&
               Write(ingest, tls(revoked.token), {Reading("d-1", 1)}).status.error_code() ==
                   grpc::StatusCode::UNAUTHENTICATED;
      },
      absl::Seconds(15)));
  v1::WriteRequest after_revocation;
  *after_revocation.add_events() = Reading("after-revocation", 3);
  open_stream->Write(after_revocation);
  open_stream->WritesDone();
  EXPECT_EQ(open_stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  while (idle->Read(&confirmation)) {
  }
  const grpc::Status idle_status = idle->Finish();
  EXPECT_EQ(idle_status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << idle_status.error_message() << " (before any change: not at its deadline)";
  stack.Sql(
      "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
      " first, last, version) SELECT series_id, interval '5 minutes',"
      " date_bin(interval '5 minutes', now(), 'epoch'), 1, 1, 1, 1, 1, 1, 1, 1"
      " FROM series LIMIT 1");
  v1::SubscribeResponse update;
  int updates_after_revocation = 0;
  while (subscription->Read(&update)) updates_after_revocation += update.updates_size();
  EXPECT_EQ(subscription->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(updates_after_revocation, 0);
  EXPECT_TRUE(Read(query, tls(reader.token)).ok());

  // A credentials file with a mistake is not loaded; the last good one stays in force.
  WriteCredentials(stack.credentials_file(), {admin_line, "token broken sha256:xyz write"});
  absl::SleepFor(absl::Seconds(2));
  EXPECT_TRUE(Read(query, tls(reader.token)).ok());
  WriteCredentials(stack.credentials_file(), lines);

  // Only what the right credentials wrote is stored: d-1, stream-device, north-7, d-2
  // (pinned) and d-3 — never south-7 or plain.
  ASSERT_TRUE(WaitFor([&] { return stack.CountPoints() >= 5; }, absl::Seconds(30)));
  const std::string devices =
      stack.Sql("SELECT string_agg(DISTINCT device_id, ',' ORDER BY device_id) FROM series");
  EXPECT_EQ(devices, "d-1,d-2,d-3,north-7,stream-device");
}

TEST_F(SecurityTest, RenewedServerCertificateIsServedWithoutARestart) {
  Stack& stack = *stack_;
  const std::string renewed = stack.dir() + "/renewed";
  ASSERT_EQ(
      std::system(
          absl::StrCat(TIDEMARK_SOURCE_DIR, "/deploy/certs.sh ", renewed, " > /dev/null").c_str()),
      0);
  const ClientSecurity old_ca{.ca_file = stack.certs_dir() + "/ca.pem",
                              .token = stack.client_security().token};
  const ClientSecurity new_ca{.ca_file = renewed + "/ca.pem",
                              .token = stack.client_security().token};
  ASSERT_TRUE(Read(stack.query_port(), old_ca).ok());
  EXPECT_EQ(Read(stack.query_port(), new_ca).error_code(), grpc::StatusCode::UNAVAILABLE);
  const std::string original = stack.dir() + "/original";
  std::filesystem::create_directories(original);
  // Key and certificate each replaced atomically, as a renewal tool would.
  auto install = [&](const std::string& from) {
    for (const char* file : {"server-key.pem", "server.pem"}) {
      const std::string target = absl::StrCat(stack.certs_dir(), "/", file);
      std::filesystem::copy_file(absl::StrCat(from, "/", file), target + ".new",
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::rename(target + ".new", target);
    }
  };
  for (const char* file : {"server-key.pem", "server.pem"}) {
    std::filesystem::copy_file(absl::StrCat(stack.certs_dir(), "/", file),
                               absl::StrCat(original, "/", file));
  }
  install(renewed);
  EXPECT_TRUE(WaitFor([&] { return Read(stack.query_port(), new_ca).ok(); }, absl::Seconds(20)));
  EXPECT_EQ(Read(stack.query_port(), old_ca).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The original back, for the tests that follow.
  install(original);
  EXPECT_TRUE(WaitFor([&] { return Read(stack.query_port(), old_ca).ok(); }, absl::Seconds(20)));
}

// Strings that would change a query built by concatenation, in every field a query takes and
// every part of an event that is stored.
TEST_F(SecurityTest, SqlInjectionStringsAreStoredAndReturnedByteExact) {
  Stack& stack = *stack_;
  const std::vector<std::string> hostile = {
      "x'; DROP TABLE points; --",
      "\" OR 1=1 --",
      "'); DELETE FROM series WHERE ('a'='a",
      "$$; SELECT pg_sleep(10); $$",
      "a\\' UNION SELECT version() --",
      "E'\\\\x00' || chr(39)",
  };
  std::vector<v1::Event> events;
  for (size_t i = 0; i < hostile.size(); ++i) {
    v1::Event e = Reading(absl::StrCat("inj-", i, hostile[i]), static_cast<double>(i));
    e.mutable_measures()->clear();
    (*e.mutable_measures())[absl::StrCat("m", i, hostile[i])].set_double_value(1.5);
    (*e.mutable_measures())["note"].set_string_value(hostile[i]);
    (*e.mutable_dimensions())[absl::StrCat("k", i, hostile[i])] = hostile[i];
    events.push_back(e);
  }
  WriteResult w = Write(stack.ingest_port(), stack.client_security(), events);
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  ASSERT_EQ(w.response.accepted(), static_cast<int64_t>(hostile.size()))
      << w.response.DebugString();

  auto stub = v1::QueryService::NewStub(ChannelTo(stack.query_port(), stack.client_security()));
  for (size_t i = 0; i < hostile.size(); ++i) {
    SCOPED_TRACE(hostile[i]);
    const std::string device = absl::StrCat("inj-", i, hostile[i]);
    const std::string measure = absl::StrCat("m", i, hostile[i]);
    const std::string key = absl::StrCat("k", i, hostile[i]);
    // The measure name, a dimension name and value, and the device id as selectors.
    v1::ReadPointsRequest req;
    req.mutable_selector()->set_measure_name(measure);
    auto* by_dimension = req.mutable_selector()->add_matchers();
    by_dimension->set_name(key);
    by_dimension->set_value(hostile[i]);
    auto* by_device = req.mutable_selector()->add_matchers();
    by_device->set_name("device_id");
    by_device->set_value(device);
    auto* not_equal = req.mutable_selector()->add_matchers();
    not_equal->set_name(hostile[i]);
    not_equal->set_op(v1::DimensionMatcher::OP_NOT_EQUAL);
    not_equal->set_value(hostile[i]);
    req.mutable_range()->set_start_us(0);
    v1::ReadPointsResponse resp;
    ASSERT_TRUE(WaitFor(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          resp.Clear();
          return stub->ReadPoints(&ctx, req, &resp).ok() && resp.series_size() == 1;
        },
        absl::Seconds(30)));
    const v1::Series& series = resp.series(0).series();
    EXPECT_EQ(series.measure_name(), measure);
    EXPECT_EQ(series.dimensions().at(key), hostile[i]);
    EXPECT_EQ(series.dimensions().at("device_id"), device);
    ASSERT_EQ(resp.series(0).points_size(), 1);
    EXPECT_EQ(resp.series(0).points(0).value().double_value(), 1.5);

    // The string value, through its own series, and a regex matcher that must not match
    // anything else.
    v1::ReadPointsRequest note;
    note.mutable_selector()->set_measure_name("note");
    auto* regex = note.mutable_selector()->add_matchers();
    regex->set_name("device_id");
    regex->set_op(v1::DimensionMatcher::OP_REGEX);
    regex->set_value(absl::StrCat("inj-", i, ".*"));
    note.mutable_range()->set_start_us(0);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ReadPointsResponse note_resp;
    ASSERT_TRUE(stub->ReadPoints(&ctx, note, &note_resp).ok());
    ASSERT_EQ(note_resp.series_size(), 1);
    ASSERT_EQ(note_resp.series(0).points_size(), 1);
    EXPECT_EQ(note_resp.series(0).points(0).value().string_value(), hostile[i]);
  }
  // Every table is still there and holds every event.
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM series WHERE device_id LIKE 'inj-%'"),
            absl::StrCat(hostile.size() * 2));
}

// Kafka TLS and SASL settings reach librdkafka from --kafka_config and --kafka_config_file,
// and neither a secret nor a bad value is echoed.
TEST_F(SecurityTest, KafkaSecuritySettingsPassThroughWithoutEchoingSecrets) {
  Stack& stack = *stack_;
  const std::string file = stack.dir() + "/kafka.properties";
  std::ofstream(file) << "# SASL over plaintext, for the test only\n"
                      << "security.protocol=sasl_plaintext\nsasl.mechanisms=PLAIN\n"
                      << "sasl.username=tidemark\nsasl.password=canary-kafka-secret-4711\n";
  auto with_file = stack.Start("ingest-kafka-sasl", Stack::Binary("services/ingest/ingest"),
                               {"--listen=127.0.0.1:0", "--allow_unauthenticated",
                                absl::StrCat("--kafka_config_file=", file)},
                               {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}});
  // It starts (the settings are valid) and serves; whether the broker accepts SASL is the
  // broker's business.
  EXPECT_TRUE(
      WaitFor([&] { return absl::StrContains(with_file->Log(), "serving"); }, absl::Seconds(20)));
  with_file.reset();

  // A TLS setting that cannot work stops the service at start-up, naming the property.
  auto bad_tls =
      stack.Start("ingest-kafka-tls", Stack::Binary("services/ingest/ingest"),
                  {"--listen=127.0.0.1:0", "--allow_unauthenticated",
                   "--kafka_config=security.protocol=ssl,ssl.ca.location=/nonexistent/ca.pem"},
                  {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}});
  auto code = bad_tls->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(absl::StrContains(bad_tls->Log(), "ssl.ca.location")) << bad_tls->Log();

  auto bad_name = stack.Start("ingest-kafka-typo", Stack::Binary("services/ingest/ingest"),
                              {"--listen=127.0.0.1:0", "--allow_unauthenticated",
                               "--kafka_config=sasl.pasword=canary-kafka-secret-4711"},
                              {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}});
  code = bad_name->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(absl::StrContains(bad_name->Log(), "sasl.pasword")) << bad_name->Log();
  EXPECT_FALSE(absl::StrContains(stack.AllLogs(), "canary-kafka-secret-4711"));
}

TEST_F(SecurityTest, ReflectionOnlyWhenEnabled) {
  Stack& stack = *stack_;
  const int port = testing::FreePort();
  auto query = stack.Start(
      "query-reflection", Stack::Binary("services/query/query"),
      {absl::StrCat("--listen=127.0.0.1:", port), "--allow_unauthenticated", "--grpc_reflection"},
      {{"TIDEMARK_PG_DSN", stack.dsn()}});
  ASSERT_TRUE(WaitFor([&] { return HealthOf(port, {}) >= 0; }, absl::Seconds(20)));
  EXPECT_NE(ReflectionCall(port, {}), grpc::StatusCode::UNIMPLEMENTED);
}

// Runs last (gtest runs a file's tests in order): every secret the stack used, in any log.
TEST_F(SecurityTest, NoSecretAppearsInAnyLogLine) {
  Stack& stack = *stack_;
  // A refused call with a token that resembles a real one, so that failures are logged too.
  const Grant stranger = MakeGrant("stranger", "read");
  EXPECT_EQ(
      Read(stack.query_port(), {.ca_file = stack.certs_dir() + "/ca.pem", .token = stranger.token})
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  stack.RunSimulator({"--devices=5", "--rate=200", "--max_records=50"});
  const std::string logs = stack.AllLogs();
  ASSERT_FALSE(logs.empty());
  EXPECT_FALSE(absl::StrContains(logs, stack.client_security().token));
  EXPECT_FALSE(absl::StrContains(logs, stranger.token));
  EXPECT_FALSE(absl::StrContains(logs, "tdm_"));
  // Nor any line of a private key.
  std::ifstream key_in(stack.certs_dir() + "/server-key.pem");
  std::string key_line;
  std::getline(key_in, key_line);  // the BEGIN line
  std::getline(key_in, key_line);
  ASSERT_FALSE(key_line.empty());
  EXPECT_FALSE(absl::StrContains(logs, key_line));
  EXPECT_FALSE(absl::StrContains(logs, "PRIVATE KEY"));
}

}  // namespace
}  // namespace tidemark::e2e
