#include "tools/cli/rpc_status.h"

#include <cstdio>
#include <string>

namespace tidemark::cli {

// Both switches name every code and have no default, so that a code added to gRPC is a
// compile error here rather than a silent guess.
absl::string_view StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::DO_NOT_USE:
      return "DO_NOT_USE";
  }
  return "UNKNOWN";
}

bool IsResumable(grpc::StatusCode code) {
  switch (code) {
    // The server ended the stream without an error (it is draining to shut down).
    case grpc::StatusCode::OK:
    // A server shutting down cancels the streams it still holds.
    case grpc::StatusCode::CANCELLED:
    // The server or the network is down; the token says where to continue.
    case grpc::StatusCode::UNAVAILABLE:
    // The service is saturated or this subscriber fell behind and was dropped: the contract's
    // answer is to resume from the last token, after a pause.
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return true;
    // The token is older than what is retained: resuming again cannot succeed.
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::DO_NOT_USE:
      return false;
  }
  return false;
}

int Fail(const grpc::Status& status) {
  const std::string name(StatusCodeName(status.error_code()));
  if (status.error_message().empty()) {
    std::fprintf(stderr, "tidemark: %s\n", name.c_str());
  } else {
    std::fprintf(stderr, "tidemark: %s: %s\n", name.c_str(), status.error_message().c_str());
  }
  return 1;
}

}  // namespace tidemark::cli
