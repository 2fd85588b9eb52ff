#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace tidemark::testing {

/// nginx (Debian's package) running deploy/nginx/tidemark-grpc.conf.template, the load
/// balancer of the local stack and of compose, in front of ingest and query replicas on
/// 127.0.0.1. Stopped on destruction.
class GrpcLoadBalancer final {
 public:
  /// `dir` holds the configuration, temp files and logs.
  static std::unique_ptr<GrpcLoadBalancer> Start(const std::string& dir,
                                                 const std::vector<int>& ingest_ports,
                                                 const std::vector<int>& query_ports);
  ~GrpcLoadBalancer();
  int ingest_port() const { return ingest_port_; }
  int query_port() const { return query_port_; }
  std::string Log() const;

 private:
  GrpcLoadBalancer() = default;
  std::unique_ptr<ChildProcess> process_;
  std::string error_log_;
  int ingest_port_ = 0, query_port_ = 0;
};

/// Where Debian installs nginx, or empty when it is not installed.
std::string NginxBinary();

}  // namespace tidemark::testing
