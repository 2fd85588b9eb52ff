#include "common/process/shutdown_signal.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace tidemark::process {
namespace {

sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  return set;
}

std::atomic<int> exit_code{0};
// Whether a ShutdownSignal blocks SIGUSR1; without one (a test), RequestStop only records.
std::atomic<bool> installed{false};

}  // namespace

ShutdownSignal::ShutdownSignal() {
  sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  installed = true;
  // A closed pipe must surface as an error on the write, not kill the process.
  signal(SIGPIPE, SIG_IGN);
}

int ShutdownSignal::Wait() {
  sigset_t set = ShutdownSet();
  int sig = 0;
  sigwait(&set, &sig);
  // From now on a second SIGTERM or SIGINT (an operator's second Ctrl-C, a supervisor that
  // lost patience) ends the process at once: every service is safe to kill at any point, and
  // a shutdown waiting on an unreachable Kafka or database can take minutes.
  std::thread([set] {
    int again = 0;
    do {
      sigwait(&set, &again);
    } while (again == SIGUSR1);
    static constexpr char kMessage[] =
        "second shutdown signal: exiting without finishing the shutdown\n";
    (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    _exit(128 + again);
  }).detach();
  return sig;
}

void ShutdownSignal::RequestStop(int code) {
  int expected = 0;
  if (code != 0) exit_code.compare_exchange_strong(expected, code);
  if (installed.load()) kill(getpid(), SIGUSR1);
}

int ShutdownSignal::ExitCode() { return exit_code.load(); }

}  // namespace tidemark::process
