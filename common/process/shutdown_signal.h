#pragma once

namespace tidemark::process {

/// The process's one shutdown signal, owned by main. Construct it first thing in main,
/// before any thread starts: it blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread,
/// so every thread created afterwards inherits the mask and only Wait() receives them.
class ShutdownSignal final {
 public:
  ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  /// Blocks until SIGTERM or SIGINT arrives, or RequestStop() is called. Returns the signal.
  /// Once called, a further SIGTERM or SIGINT exits the process at once with 128 + signal.
  int Wait();
  /// Asks Wait() to return, from any thread. A component that hit a fatal error passes a
  /// non-zero exit code, so that the process exits with it and its supervisor restarts it.
  static void RequestStop(int exit_code = 0);
  /// The exit code the process should end with: the first non-zero one requested, else 0.
  static int ExitCode();
};

}  // namespace tidemark::process
