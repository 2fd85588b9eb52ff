#include "tools/devbroker/control_server.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace tidemark::devbroker {
namespace {

void Answer(httplib::Response& res, const absl::Status& s, DevBroker& broker) {
  if (s.ok()) {
    res.set_content(StateJson(broker.State()), "application/json");
    return;
  }
  res.status = s.code() == absl::StatusCode::kNotFound ? 404 : 400;
  res.set_content(nlohmann::json{{"error", std::string(s.message())}}.dump(), "application/json");
}

absl::StatusOr<int> Int(const std::string& text, const char* what) {
  int v = 0;
  if (!absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", text, "\" is not a number"));
  }
  return v;
}

}  // namespace

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

std::string StateJson(const ClusterState& state) {
  nlohmann::json j;
  j["bootstrap"] = state.bootstrap;
  j["brokers"] = nlohmann::json::array();
  for (const auto& [id, up] : state.brokers_up) j["brokers"].push_back({{"id", id}, {"up", up}});
  j["leaders"] = state.leaders;
  j["group_coordinators"] = state.group_coordinators;
  return j.dump();
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(DevBroker& broker,
                                                                    const std::string& host,
                                                                    int port) {
  if (!IsLoopback(host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the control interface has no authentication and listens on loopback only, not ", host));
  }
  std::unique_ptr<ControlServer> c(new ControlServer());
  c->server_ = std::make_unique<httplib::Server>();
  httplib::Server& srv = *c->server_;
  DevBroker* b = &broker;
  srv.Get("/state", [b](const httplib::Request&, httplib::Response& res) {
    Answer(res, absl::OkStatus(), *b);
  });
  srv.Post(R"(/brokers/([^/]+)/(up|down|failover))",
           [b](const httplib::Request& req, httplib::Response& res) {
             absl::StatusOr<int> id = Int(req.matches[1], "broker id");
             if (!id.ok()) return Answer(res, id.status(), *b);
             const std::string op = req.matches[2];
             if (op == "failover") return Answer(res, b->MoveAwayFrom(*id).status(), *b);
             Answer(res, b->SetBrokerUp(*id, op == "up"), *b);
           });
  srv.Post("/leaders/rotate", [b](const httplib::Request&, httplib::Response& res) {
    Answer(res, b->RotateLeaders().status(), *b);
  });
  srv.Post(R"(/partitions/([^/]+)/([^/]+)/leader/([^/]+))",
           [b](const httplib::Request& req, httplib::Response& res) {
             absl::StatusOr<int> partition = Int(req.matches[2], "partition");
             if (!partition.ok()) return Answer(res, partition.status(), *b);
             absl::StatusOr<int> id = Int(req.matches[3], "broker id");
             if (!id.ok()) return Answer(res, id.status(), *b);
             Answer(res, b->SetLeader(req.matches[1], *partition, *id), *b);
           });
  srv.Post(R"(/groups/([^/]+)/coordinator/([^/]+))",
           [b](const httplib::Request& req, httplib::Response& res) {
             absl::StatusOr<int> id = Int(req.matches[2], "broker id");
             if (!id.ok()) return Answer(res, id.status(), *b);
             Answer(res, b->SetGroupCoordinator(req.matches[1], *id), *b);
           });
  c->port_ = port == 0 ? srv.bind_to_any_port(host) : (srv.bind_to_port(host, port) ? port : -1);
  if (c->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port));
  }
  c->thread_ = std::thread([&srv] { srv.listen_after_bind(); });
  return c;
}

ControlServer::~ControlServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tidemark::devbroker
