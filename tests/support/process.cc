#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace tidemark::testing {
namespace {

// Children not yet reaped. A test or benchmark that ends with exit() (a failed step) skips
// the destructors that stop its children; without this a dev broker or service would keep
// running, and keep using the machine's cores, after the program that started it is gone.
struct LiveChildren {
  absl::Mutex mu;
  absl::flat_hash_set<pid_t> pids ABSL_GUARDED_BY(mu);
};

LiveChildren& Live() {
  static auto* live = new LiveChildren();  // never destroyed: the exit handler may still run
  return *live;
}

void KillLiveChildren() {
  LiveChildren& live = Live();
  absl::MutexLock lock(&live.mu);
  for (pid_t pid : live.pids) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  live.pids.clear();
}

void TrackChild(pid_t pid) {
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(&KillLiveChildren); });
  LiveChildren& live = Live();
  absl::MutexLock lock(&live.mu);
  live.pids.insert(pid);
}

void ForgetChild(pid_t pid) {
  LiveChildren& live = Live();
  absl::MutexLock lock(&live.mu);
  live.pids.erase(pid);
}

}  // namespace

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env, const std::string& log_path) {
  std::unique_ptr<ChildProcess> p(new ChildProcess());
  p->log_path_ = log_path;
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    // Nothing else of the test's: a child holding its sockets or pipes (gtest's death-test
    // pipe, a port it bound) would keep them open after the test closed them.
    close_range(3, ~0U, 0);
    // The test process may block signals (gRPC, or a ShutdownSignal); children start clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  p->pid_ = pid;
  TrackChild(pid);
  return p;
}

ChildProcess::~ChildProcess() {
  if (Running()) {
    kill(pid_, SIGKILL);
    (void)Wait(absl::Seconds(10));
  }
}

void ChildProcess::Signal(int sig) { kill(pid_, sig); }

bool ChildProcess::Running() {
  if (exited_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    ForgetChild(pid_);
    exited_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  if (!WaitFor([this] { return !Running(); }, timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
  }
  return exit_code_;
}

std::string ChildProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (true) {
    if (predicate()) return true;
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

int MetricsPort(ChildProcess& p, absl::Duration wait) {
  int port = 0;
  WaitFor(
      [&] {
        const std::string log = p.Log();
        const size_t at = log.rfind("metrics_port=");
        if (at == std::string::npos) return false;
        const size_t end = log.find_first_not_of("0123456789", at + 13);
        return absl::SimpleAtoi(log.substr(at + 13, end - at - 13), &port);
      },
      wait);
  return port;
}

}  // namespace tidemark::testing
