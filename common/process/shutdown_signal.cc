#include "common/process/shutdown_signal.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

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
  return sig;
}

void ShutdownSignal::RequestStop(int code) {
  int expected = 0;
  if (code != 0) exit_code.compare_exchange_strong(expected, code);
  if (installed.load()) kill(getpid(), SIGUSR1);
}

int ShutdownSignal::ExitCode() { return exit_code.load(); }

}  // namespace tidemark::process
