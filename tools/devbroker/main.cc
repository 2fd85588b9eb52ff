// devbroker: the development Kafka broker for the local stack and the tests.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "common/log/log.h"
#include "common/process/shutdown_signal.h"
#include "tools/devbroker/control_server.h"
#include "tools/devbroker/dev_broker.h"

ABSL_FLAG(int, brokers, 1, "Number of brokers in the cluster");
ABSL_FLAG(std::string, topics,
          "tidemark.raw:12,tidemark.aggregates:6,tidemark.late:3,tidemark.rejected:3",
          "Topics to create, name:partitions,...");
ABSL_FLAG(std::string, bootstrap_file, "",
          "Where to write the bootstrap address once the brokers listen");
ABSL_FLAG(std::string, control_listen, "",
          "Loopback host:port of the HTTP fault controls (port 0: any free port; empty: off); "
          "see tools/devbroker/README.md");
ABSL_FLAG(std::string, control_file, "",
          "Where to write the control interface's host:port once it listens");

namespace {

using namespace tidemark;

absl::Status WriteAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << "\n";
    if (!out.flush()) return absl::UnavailableError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError("cannot rename to " + path + ": " + ec.message());
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("devbroker");
  if (auto args = config::ParseFlagsAndEnvironment(
          argc, argv, "development Kafka broker (librdkafka mock cluster) on 127.0.0.1",
          logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  auto topics = devbroker::ParseTopics(absl::GetFlag(FLAGS_topics));
  if (!topics.ok()) {
    logger->critical("msg=\"bad setting --topics: {}\"", topics.status().message());
    return 2;
  }
  if (absl::Status s = config::RequirePositive("brokers", absl::GetFlag(FLAGS_brokers)); !s.ok()) {
    logger->critical("msg=\"{}\"", s.message());
    return 2;
  }
  // Checked before the cluster starts, so that a bad setting fails at once.
  const std::string control_listen = absl::GetFlag(FLAGS_control_listen);
  std::string host;
  int port = -1;
  if (!control_listen.empty()) {
    const size_t colon = control_listen.rfind(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(control_listen.substr(colon + 1), &port) ||
        port < 0 || port > 65535) {
      logger->critical(
          "msg=\"bad setting --control_listen: expected host:port, e.g. "
          "127.0.0.1:0\" value=\"{}\"",
          control_listen);
      return 2;
    }
    host = control_listen.substr(0, colon);
    if (!devbroker::IsLoopback(host)) {
      logger->critical(
          "msg=\"bad setting --control_listen: the fault controls have no "
          "authentication and listen on loopback only\" value=\"{}\"",
          control_listen);
      return 2;
    }
  }
  auto broker = devbroker::DevBroker::Start(absl::GetFlag(FLAGS_brokers), *topics);
  if (!broker.ok()) {
    logger->critical("msg=\"{}\"", broker.status().message());
    return 1;
  }
  const std::string& bootstrap = (*broker)->bootstrap_servers();
  std::unique_ptr<devbroker::ControlServer> control;
  if (!control_listen.empty()) {
    auto started = devbroker::ControlServer::Start(**broker, host, port);
    if (!started.ok()) {
      logger->critical("msg=\"bad setting --control_listen: {}\"", started.status().message());
      return 2;
    }
    control = *std::move(started);
    const std::string address = absl::StrCat(host, ":", control->port());
    if (const std::string file = absl::GetFlag(FLAGS_control_file); !file.empty()) {
      if (absl::Status s = WriteAtomically(file, address); !s.ok()) {
        logger->critical("msg=\"{}\"", s.message());
        return 1;
      }
    }
    logger->info("msg=\"fault controls over HTTP\" control={}", address);
  }
  // Last: whoever waits for the bootstrap file may use the control interface at once.
  if (const std::string file = absl::GetFlag(FLAGS_bootstrap_file); !file.empty()) {
    if (absl::Status s = WriteAtomically(file, bootstrap); !s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 1;
    }
  }
  logger->info("msg=\"serving the Kafka protocol\" bootstrap={} brokers={} topics={}", bootstrap,
               absl::GetFlag(FLAGS_brokers), absl::GetFlag(FLAGS_topics));
  shutdown.Wait();
  logger->info("msg=\"stopping; the in-memory log is discarded\"");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
