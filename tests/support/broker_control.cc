#include "tests/support/broker_control.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace tidemark::testing {

BrokerControl::BrokerControl(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  (void)absl::SimpleAtoi(address.substr(colon + 1), &port);
  http_ = std::make_unique<httplib::Client>(address.substr(0, colon), port);
  http_->set_connection_timeout(5);
  http_->set_read_timeout(10);
}

BrokerControl::~BrokerControl() = default;

absl::StatusOr<nlohmann::json> BrokerControl::Call(const std::string& method,
                                                   const std::string& path) {
  httplib::Result res = method == "GET" ? http_->Get(path) : http_->Post(path);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat(method, " ", path, ": ", httplib::to_string(res.error())));
  }
  nlohmann::json body = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status != 200 || body.is_discarded()) {
    return absl::InternalError(absl::StrCat(method, " ", path, ": ", res->status, " ", res->body));
  }
  return body;
}

absl::StatusOr<nlohmann::json> BrokerControl::State() { return Call("GET", "/state"); }
absl::StatusOr<nlohmann::json> BrokerControl::Down(int broker) {
  return Call("POST", absl::StrCat("/brokers/", broker, "/down"));
}
absl::StatusOr<nlohmann::json> BrokerControl::Up(int broker) {
  return Call("POST", absl::StrCat("/brokers/", broker, "/up"));
}
absl::StatusOr<nlohmann::json> BrokerControl::Failover(int broker) {
  return Call("POST", absl::StrCat("/brokers/", broker, "/failover"));
}
absl::StatusOr<nlohmann::json> BrokerControl::RotateLeaders() {
  return Call("POST", "/leaders/rotate");
}
absl::StatusOr<nlohmann::json> BrokerControl::SetLeader(const std::string& topic, int partition,
                                                        int broker) {
  return Call("POST", absl::StrCat("/partitions/", topic, "/", partition, "/leader/", broker));
}
absl::StatusOr<nlohmann::json> BrokerControl::SetGroupCoordinator(const std::string& group,
                                                                  int broker) {
  return Call("POST", absl::StrCat("/groups/", group, "/coordinator/", broker));
}

}  // namespace tidemark::testing
