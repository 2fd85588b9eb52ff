#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/grpc/security.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "tests/support/broker_control.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tidemark/v1/ingest.grpc.pb.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::testing {

struct StackOptions {
  /// Passed to every aggregator replica started with StartAggregator.
  std::vector<std::string> aggregator_flags;
  /// Brokers in the development cluster (librdkafka's mock cluster; at most 3 replicas).
  int brokers = 1;
  /// Appended to ingest's flags (later flags win).
  std::vector<std::string> ingest_flags;
  /// Ingest and query serve TLS (certificates from deploy/certs.sh, client certificates
  /// verified against the same CA) and check a credentials file that grants the stack's own
  /// clients (stubs, simulator) an all-scopes token. Otherwise the API is open
  /// (TIDEMARK_ALLOW_UNAUTHENTICATED) and plaintext.
  bool secure = false;
};

/// A whole pipeline of real binaries on its own database, broker and ports: devbroker,
/// timestream-writer, ingest, query, and any number of aggregator replicas.
class Stack {
 public:
  /// `aggregator_flags` is passed to every aggregator replica started with StartAggregator.
  Stack(PgCluster& pg, std::vector<std::string> aggregator_flags = {});
  Stack(PgCluster& pg, StackOptions options);
  /// On a failed test, prints every process's log.
  ~Stack();

  void StartWriter();
  /// Starts aggregator replica `n` (0, 1, ...), replacing a stopped one.
  void StartAggregator(int n);
  /// Starts (or restarts) the archive with these flags (e.g. --lake=DIR) and environment.
  void StartArchive(const std::vector<std::string>& flags,
                    std::map<std::string, std::string> env = {});
  ChildProcess& archive() { return *archive_; }
  ChildProcess& writer() { return *writer_; }
  ChildProcess& aggregator(int n) { return *aggregators_.at(n); }
  ChildProcess& broker() { return *broker_; }
  /// The development broker's fault controls (down, up, failover, leader moves).
  BrokerControl& broker_control() { return *broker_control_; }
  ChildProcess& ingest_process() { return *ingest_; }
  v1::IngestService::Stub& ingest() { return *ingest_stub_; }
  v1::QueryService::Stub& query() { return *query_stub_; }
  int ingest_port() const { return ingest_port_; }
  int query_port() const { return query_port_; }
  /// How the stack's own clients connect: TLS trusting its CA and its token when secure.
  const grpcutil::ClientSecurity& client_security() const { return client_security_; }
  /// A secure stack's CA and certificates (ca.pem, server.pem, client.pem, ...).
  std::string certs_dir() const { return dir_ + "/certs"; }
  /// A secure stack's credentials file; rewrite it to grant or revoke (services re-read it).
  std::string credentials_file() const { return dir_ + "/credentials"; }
  /// Every line every process of this stack logged so far.
  std::string AllLogs() const;
  const std::string& db() const { return db_; }
  /// The superuser's DSN on this stack's database.
  std::string dsn() const;
  /// This stack's own directory (logs; room for a lake).
  const std::string& dir() const { return dir_; }
  const std::string& brokers() const { return brokers_; }
  /// The path of a built binary, e.g. "services/archive/archive".
  static std::string Binary(const std::string& relative);

  std::unique_ptr<ChildProcess> Start(const std::string& name, const std::string& path,
                                      const std::vector<std::string>& args,
                                      std::map<std::string, std::string> env);
  /// Every point readable through the query API (all series, all time), by paging; -1 on
  /// an error.
  int64_t CountPoints();
  /// Runs the simulator against ingest to completion and returns its JSON summary.
  nlohmann::json RunSimulator(const std::vector<std::string>& args);
  /// Starts the simulator in the background.
  std::unique_ptr<ChildProcess> StartSimulator(const std::vector<std::string>& args,
                                               const std::string& name = "simulator");
  /// SQL as the superuser on this stack's database.
  std::string Sql(const std::string& sql);

 private:
  PgCluster& pg_;
  StackOptions options_;
  std::string db_, dir_, brokers_;
  int ingest_port_ = 0, query_port_ = 0;
  std::unique_ptr<ChildProcess> broker_, writer_, ingest_, query_, archive_;
  std::map<int, std::unique_ptr<ChildProcess>> aggregators_;
  std::vector<std::string> logs_;
  std::unique_ptr<BrokerControl> broker_control_;
  grpcutil::ClientSecurity client_security_;
  std::vector<std::string> api_flags_;
  std::unique_ptr<v1::IngestService::Stub> ingest_stub_;
  std::unique_ptr<v1::QueryService::Stub> query_stub_;
};

/// The JSON summary line the simulator prints last.
nlohmann::json SimulatorSummary(const std::string& log);

/// What a failed WriteStream answered in its trailer `tidemark-write-response-bin`
/// (ingest.proto): the WriteResponse's bytes, or nullopt when the trailer is missing.
std::optional<std::string> StreamAnswerBytes(const grpc::ClientContext& ctx);

}  // namespace tidemark::testing
