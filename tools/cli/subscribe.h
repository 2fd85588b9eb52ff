#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/process/shutdown_signal.h"
#include "grpcpp/grpcpp.h"
#include "tidemark/v1/query.grpc.pb.h"
#include "tools/cli/output.h"

namespace tidemark::cli {

/// How long to wait before opening a dropped subscription again: doubling from `initial` up
/// to `max`, each wait jittered by up to a fifth so that clients dropped together do not
/// return together.
struct Backoff {
  absl::Duration initial = absl::Milliseconds(250);
  absl::Duration max = absl::Seconds(15);
};

/// Follows one Subscribe request: prints every update as it arrives and, when the stream
/// ends with a resumable status (rpc_status.h IsResumable), opens it again from the last
/// resume token after a backoff. Run() on one thread; Stop() from any other.
class Subscriber final {
 public:
  Subscriber(v1::QueryService::StubInterface& stub, v1::SubscribeRequest request,
             const Output& output, Backoff backoff = {});

  /// Returns when Stop() was called or `output.limit` updates were printed (0; the limit is
  /// checked after whole responses, so that the resume token skips nothing unprinted), when
  /// stdout could not be written (1) or when the stream ended with a status that resuming
  /// cannot cure (1, after printing it). Prints the last resume
  /// token to stderr in every case, so that the subscription can be continued.
  int Run();

  /// Ends Run(): cancels the stream in flight or the wait before the next one.
  void Stop();

  /// The token to continue from: the last one the service sent, or the one given.
  std::string resume_token() const;

 private:
  // Returns false when stdout failed.
  bool Print(const v1::SubscribeResponse& response);
  void PrintHeader() const;
  // Waits `delay` unless stopped first; returns whether Stop() was called.
  bool WaitUnlessStopped(absl::Duration delay);
  int Finish(int code) const;

  v1::QueryService::StubInterface& stub_;
  v1::SubscribeRequest request_;
  const Output output_;
  const Backoff backoff_;
  // Updates printed; read and written by Run()'s thread only.
  int64_t printed_ = 0;

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // The call in flight, for Stop() to cancel; owned by Run()'s stack.
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string token_ ABSL_GUARDED_BY(mu_);
};

/// Runs `request` until SIGINT or SIGTERM (a clean end, exit code 0) or a lasting error.
/// `signal` must have been constructed before the gRPC channel, so that only it receives the
/// signals.
int RunSubscribe(v1::QueryService::StubInterface& stub, const v1::SubscribeRequest& request,
                 const Output& output, process::ShutdownSignal& signal);

}  // namespace tidemark::cli
