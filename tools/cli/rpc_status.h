#pragma once

#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace tidemark::cli {

/// The status code's name as gRPC documents it ("INVALID_ARGUMENT"): what a person searches
/// for, where the number means nothing.
absl::string_view StatusCodeName(grpc::StatusCode code);

/// Whether a Subscribe stream that ended with `code` (and was not cancelled by us) is worth
/// opening again from its last resume token.
bool IsResumable(grpc::StatusCode code);

/// Prints "tidemark: NAME: message" to stderr and returns the exit code of a failed call, 1.
int Fail(const grpc::Status& status);

}  // namespace tidemark::cli
