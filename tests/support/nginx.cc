#include "tests/support/nginx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace tidemark::testing {
namespace {

std::string Servers(const std::vector<int>& ports) {
  std::string out;
  for (int p : ports) absl::StrAppend(&out, "server 127.0.0.1:", p, " max_fails=1 fail_timeout=5s; ");
  return out;
}

// Whether something accepts connections on 127.0.0.1:port.
bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::string NginxBinary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return "";
}

std::unique_ptr<GrpcLoadBalancer> GrpcLoadBalancer::Start(const std::string& dir,
                                                          const std::vector<int>& ingest_ports,
                                                          const std::vector<int>& query_ports) {
  std::unique_ptr<GrpcLoadBalancer> lb(new GrpcLoadBalancer());
  const std::string nginx = NginxBinary();
  EXPECT_FALSE(nginx.empty()) << "nginx is not installed (scripts/install-deps.sh installs it)";
  if (nginx.empty()) return nullptr;
  std::filesystem::create_directories(dir);
  // Workers run as another user when the tests run as root.
  chmod(dir.c_str(), 0777);
  std::ifstream in(TIDEMARK_SOURCE_DIR "/deploy/nginx/tidemark-grpc.conf.template");
  std::stringstream text;
  text << in.rdbuf();
  lb->error_log_ = dir + "/error.log";
  // A free port can be taken (by a client socket's ephemeral port) before nginx binds it:
  // nginx then exits, and another pair of ports is tried.
  for (int attempt = 0; attempt < 5; ++attempt) {
    lb->ingest_port_ = FreePort();
    lb->query_port_ = FreePort();
    const std::string conf = absl::StrReplaceAll(
        text.str(), {{"${NGINX_STATE}", dir},
                     {"${NGINX_ERROR_LOG}", lb->error_log_},
                     {"${INGEST_LISTEN}", absl::StrCat("127.0.0.1:", lb->ingest_port_)},
                     {"${QUERY_LISTEN}", absl::StrCat("127.0.0.1:", lb->query_port_)},
                     {"${INGEST_SERVERS}", Servers(ingest_ports)},
                     {"${QUERY_SERVERS}", Servers(query_ports)},
                     // Plaintext: the tests behind nginx run open stacks.
                     {"${LISTEN_TLS}", ""},
                     {"${SERVER_TLS}", ""},
                     {"${UPSTREAM_SCHEME}", "grpc"},
                     {"${UPSTREAM_TLS}", ""}});
    std::ofstream(dir + "/nginx.conf") << conf;
    auto p = ChildProcess::Start(nginx,
                                 {"-e", lb->error_log_, "-c", dir + "/nginx.conf", "-g",
                                  "daemon off;"},
                                 {}, absl::StrCat(dir, "/nginx-", attempt, ".out"));
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    lb->process_ = *std::move(p);
    WaitFor(
        [&] {
          return !lb->process_->Running() ||
                 (Listening(lb->ingest_port_) && Listening(lb->query_port_));
        },
        absl::Seconds(10));
    if (lb->process_->Running()) break;
  }
  EXPECT_TRUE(lb->process_->Running() && Listening(lb->ingest_port_) &&
              Listening(lb->query_port_))
      << lb->Log();
  return lb;
}

GrpcLoadBalancer::~GrpcLoadBalancer() {
  if (process_ && process_->Running()) {
    process_->Signal(SIGQUIT);  // nginx's graceful stop
    (void)process_->Wait(absl::Seconds(5));
  }
}

std::string GrpcLoadBalancer::Log() const {
  std::ifstream in(error_log_);
  std::stringstream s;
  s << in.rdbuf();
  return absl::StrCat(process_ ? process_->Log() : "", s.str());
}

}  // namespace tidemark::testing
