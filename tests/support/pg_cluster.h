#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tidemark::testing {

/// A private PostgreSQL cluster in a temporary directory, for one test binary. Runs as the
/// `postgres` system user when the tests run as root (PostgreSQL refuses root).
class PgCluster final {
 public:
  static absl::StatusOr<std::unique_ptr<PgCluster>> Start();
  /// Stops the server and removes the directory.
  ~PgCluster();

  /// Creates a database and returns the DSN of the superuser `tidemark` on it.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  /// DSN for `user` on `database`.
  std::string Dsn(const std::string& database, const std::string& user = "tidemark") const;
  /// Runs SQL through psql as the superuser and returns its unaligned output.
  absl::StatusOr<std::string> Psql(const std::string& database, const std::string& sql) const;

  /// Makes `users` authenticate with their password (scram-sha-256) over TCP and the socket,
  /// where everyone else keeps trust, and reloads the configuration.
  absl::Status RequirePasswordFor(const std::vector<std::string>& users);
  /// The directory of PostgreSQL's programs (psql, pg_ctl, ...).
  const std::string& bin_dir() const { return bin_; }

  /// `pg_ctl stop -m immediate`: a crash, as far as clients can tell.
  absl::Status StopImmediate();
  absl::Status StartAgain();
  int port() const { return port_; }

 private:
  PgCluster() = default;
  absl::Status RunAsOwner(const std::string& command) const;
  // Keeps the set of clusters whose server runs, which an atexit handler stops and removes:
  // std::exit (a benchmark that fails, say) skips the destructors of local objects, and the
  // server, started by pg_ctl, would outlive the process.
  void SetLive(bool live);
  static void StopLiveAtExit();

  std::string bin_;
  std::string dir_;
  int port_ = 0;
  bool running_ = false;
};

/// The test binary's cluster: started on first use, stopped when the binary exits, so a
/// binary starts PostgreSQL once however many test cases it has. Aborts if it cannot start.
PgCluster& SharedPgCluster();

}  // namespace tidemark::testing
