#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/auth/authenticator.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "services/query/query_store.h"
#include "services/query/subscription_hub.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::query {

struct QueryConfig {
  std::string pg_dsn;
  QueryLimits limits;
  /// Workers, each with its own read-only PostgreSQL connection.
  int workers = 4;
  /// Calls waiting for a worker beyond which new calls get RESOURCE_EXHAUSTED.
  int max_queued_calls = 256;
  /// Used when the client sets no deadline.
  absl::Duration default_timeout = absl::Seconds(30);
  /// The longest a query may run, whatever deadline the client asks for.
  absl::Duration max_timeout = absl::Minutes(5);
  SubscriptionOptions subscriptions;
};

struct QueryMetrics {
  explicit QueryMetrics(metrics::Registry& r);
  metrics::Counter& calls;
  metrics::Counter& failures;
  metrics::Histogram& latency;
  /// Calls refused for their credentials, by reason (unauthenticated, permission_denied).
  metrics::Counter& unauthenticated;
  metrics::Counter& permission_denied;
  SubscriptionMetrics subscriptions;
};

/// QueryService over the callback API. Reactors never block: each call is handed to a
/// worker that owns a database connection and finishes the call when the query returns.
class QueryServiceImpl final : public v1::QueryService::CallbackService {
 public:
  /// Every call needs credentials with the read scope.
  QueryServiceImpl(const QueryConfig& config, QueryMetrics& metrics,
                   auth::Authenticator& authenticator, std::shared_ptr<spdlog::logger> logger);
  /// Finishes queued calls with UNAVAILABLE and joins the workers.
  ~QueryServiceImpl() override;
  /// Ends open subscriptions with UNAVAILABLE, so that their clients resume elsewhere,
  /// instead of being cancelled when the server's grace period ends.
  void BeginShutdown();

  grpc::ServerUnaryReactor* ListSeries(grpc::CallbackServerContext* ctx,
                                       const v1::ListSeriesRequest* req,
                                       v1::ListSeriesResponse* resp) override;
  grpc::ServerUnaryReactor* ReadPoints(grpc::CallbackServerContext* ctx,
                                       const v1::ReadPointsRequest* req,
                                       v1::ReadPointsResponse* resp) override;
  grpc::ServerUnaryReactor* ReadAggregates(grpc::CallbackServerContext* ctx,
                                           const v1::ReadAggregatesRequest* req,
                                           v1::ReadAggregatesResponse* resp) override;
  grpc::ServerUnaryReactor* Rollup(grpc::CallbackServerContext* ctx, const v1::RollupRequest* req,
                                   v1::RollupResponse* resp) override;
  grpc::ServerUnaryReactor* Interpolate(grpc::CallbackServerContext* ctx,
                                        const v1::InterpolateRequest* req,
                                        v1::InterpolateResponse* resp) override;
  grpc::ServerWriteReactor<v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* req) override;

 private:
  using Task = std::function<absl::Status(QueryStore&, absl::Duration)>;
  /// The caller, when the call's credentials carry the read scope; UNAUTHENTICATED or
  /// PERMISSION_DENIED otherwise.
  absl::StatusOr<auth::Principal> MayRead(grpc::CallbackServerContext* ctx);
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx, Task task);
  /// Submits a store read whose result becomes the response.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* SubmitRead(grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
                                       absl::StatusOr<Resp> (QueryStore::*read)(const Req&,
                                                                                absl::Duration)) {
    return Submit(ctx, [req, resp, read](QueryStore& store, absl::Duration timeout) {
      absl::StatusOr<Resp> r = (store.*read)(*req, timeout);
      if (!r.ok()) return r.status();
      *resp = *std::move(r);
      return absl::OkStatus();
    });
  }
  void WorkerLoop();

  const QueryConfig config_;
  QueryMetrics& metrics_;
  auth::Authenticator& authenticator_;
  std::shared_ptr<spdlog::logger> logger_;
  struct Call {
    grpc::CallbackServerContext* ctx;
    grpc::ServerUnaryReactor* reactor;
    Task task;
    absl::Time start;
  };
  absl::Mutex mu_;
  std::deque<Call> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  SubscriptionHub hub_;
};

}  // namespace tidemark::query
