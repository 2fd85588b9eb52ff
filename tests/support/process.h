#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidemark::testing {

/// A free TCP port on 127.0.0.1 (bound to 0, read back, released).
int FreePort();

/// A child process with its output in a log file. Killed (SIGKILL) on destruction if still
/// running.
class ChildProcess final {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& path, const std::vector<std::string>& args,
      const std::map<std::string, std::string>& env, const std::string& log_path);
  ~ChildProcess();

  void Signal(int sig);
  /// Waits for exit; returns the exit code (128 + signal when killed), or DeadlineExceeded.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  /// The log's content (for assertions and failure messages).
  std::string Log() const;

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = 0;
  std::string log_path_;
};

/// Polls `predicate` every 50 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout);

/// The metrics port a service logged at start-up ("metrics_port=N"; tests bind port 0), or 0
/// when it has not logged one within `wait`.
int MetricsPort(ChildProcess& p, absl::Duration wait = absl::Seconds(30));

}  // namespace tidemark::testing
