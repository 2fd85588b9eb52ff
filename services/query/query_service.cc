#include "services/query/query_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc/serve.h"

namespace tidemark::query {
QueryMetrics::QueryMetrics(metrics::Registry& r)
    : calls(r.AddCounter("tidemark_query_calls_total", "Query RPCs received")),
      failures(r.AddCounter("tidemark_query_failures_total", "Query RPCs that failed")),
      latency(r.AddHistogram("tidemark_query_seconds", "Query RPC latency")),
      unauthenticated(r.AddCounter("tidemark_query_auth_refused_total",
                                   "Calls refused for their credentials",
                                   "reason=\"unauthenticated\"")),
      permission_denied(r.AddCounter("tidemark_query_auth_refused_total",
                                     "Calls refused for their credentials",
                                     "reason=\"permission_denied\"")),
      subscriptions(r) {}

QueryServiceImpl::QueryServiceImpl(const QueryConfig& config, QueryMetrics& metrics,
                                   auth::Authenticator& authenticator,
                                   std::shared_ptr<spdlog::logger> logger)
    : config_(config),
      metrics_(metrics),
      authenticator_(authenticator),
      logger_(logger),
      hub_(
          [&config] {
            SubscriptionOptions o = config.subscriptions;
            o.pg_dsn = config.pg_dsn;
            return o;
          }(),
          metrics.subscriptions, logger) {
  for (int i = 0; i < config_.workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

QueryServiceImpl::~QueryServiceImpl() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

absl::StatusOr<auth::Principal> QueryServiceImpl::MayRead(grpc::CallbackServerContext* ctx) {
  absl::StatusOr<auth::Principal> principal = grpcutil::CallPrincipal(authenticator_, *ctx);
  if (!principal.ok()) {
    metrics_.unauthenticated.Add();
    return principal.status();
  }
  if (absl::Status s = auth::RequireRead(*principal); !s.ok()) {
    metrics_.permission_denied.Add();
    return s;
  }
  return principal;
}

grpc::ServerUnaryReactor* QueryServiceImpl::Submit(grpc::CallbackServerContext* ctx, Task task) {
  metrics_.calls.Add();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::StatusOr<auth::Principal> p = MayRead(ctx); !p.ok()) {
    metrics_.failures.Add();
    reactor->Finish(grpcutil::ToGrpcStatus(p.status()));
    return reactor;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ && static_cast<int>(queue_.size()) < config_.max_queued_calls) {
      queue_.push_back({ctx, reactor, std::move(task), absl::Now()});
      return reactor;
    }
  }
  metrics_.failures.Add();
  reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "too many queries in progress; retry with backoff"));
  return reactor;
}

void QueryServiceImpl::WorkerLoop() {
  QueryStore store(config_.pg_dsn, config_.limits);
  while (true) {
    Call call;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](QueryServiceImpl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;
      call = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Status status;
    // A client without a deadline shows up as one centuries away; none runs past the maximum.
    const absl::Duration timeout = CallTimeout(absl::FromChrono(call.ctx->deadline()) - absl::Now(),
                                               config_.default_timeout, config_.max_timeout);
    if (call.ctx->IsCancelled()) {
      status = absl::CancelledError("the call was cancelled before it ran");
    } else if (timeout <= absl::ZeroDuration()) {
      status = absl::DeadlineExceededError("the deadline passed while the call was queued");
    } else {
      status = call.task(store, timeout);
    }
    if (!status.ok()) {
      metrics_.failures.Add();
      if (status.code() != absl::StatusCode::kInvalidArgument) {
        logger_->warn("msg=\"query failed\" error=\"{}\"", status.message());
      }
    }
    metrics_.latency.Observe(absl::ToDoubleSeconds(absl::Now() - call.start));
    call.reactor->Finish(grpcutil::ToGrpcStatus(status));
  }
}

grpc::ServerUnaryReactor* QueryServiceImpl::ListSeries(grpc::CallbackServerContext* ctx,
                                                       const v1::ListSeriesRequest* req,
                                                       v1::ListSeriesResponse* resp) {
  return SubmitRead(ctx, req, resp, &QueryStore::ListSeries);
}

grpc::ServerUnaryReactor* QueryServiceImpl::ReadPoints(grpc::CallbackServerContext* ctx,
                                                       const v1::ReadPointsRequest* req,
                                                       v1::ReadPointsResponse* resp) {
  return SubmitRead(ctx, req, resp, &QueryStore::ReadPoints);
}

grpc::ServerUnaryReactor* QueryServiceImpl::ReadAggregates(grpc::CallbackServerContext* ctx,
                                                           const v1::ReadAggregatesRequest* req,
                                                           v1::ReadAggregatesResponse* resp) {
  return SubmitRead(ctx, req, resp, &QueryStore::ReadAggregates);
}

grpc::ServerUnaryReactor* QueryServiceImpl::Rollup(grpc::CallbackServerContext* ctx,
                                                   const v1::RollupRequest* req,
                                                   v1::RollupResponse* resp) {
  return SubmitRead(ctx, req, resp, &QueryStore::Rollup);
}

grpc::ServerUnaryReactor* QueryServiceImpl::Interpolate(grpc::CallbackServerContext* ctx,
                                                        const v1::InterpolateRequest* req,
                                                        v1::InterpolateResponse* resp) {
  return SubmitRead(ctx, req, resp, &QueryStore::Interpolate);
}

namespace {
// A subscription whose credentials were refused: answered at once.
class RefusedSubscription final : public grpc::ServerWriteReactor<v1::SubscribeResponse> {
 public:
  explicit RefusedSubscription(const absl::Status& why) { Finish(grpcutil::ToGrpcStatus(why)); }
  void OnDone() override { delete this; }
};
}  // namespace

void QueryServiceImpl::BeginShutdown() { hub_.EndAll(); }

grpc::ServerWriteReactor<v1::SubscribeResponse>* QueryServiceImpl::Subscribe(
    grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* req) {
  metrics_.calls.Add();
  absl::StatusOr<auth::Principal> principal = MayRead(ctx);
  if (!principal.ok()) {
    metrics_.failures.Add();
    return new RefusedSubscription(principal.status());
  }
  // Whom --max_subscriptions_per_client counts: the principal. A replica that checks no
  // credentials cannot tell clients apart (behind a proxy every caller has its address), so
  // only --max_subscriptions holds there.
  const std::string client = authenticator_.open() ? "" : principal->name;
  // Asked again before each batch of changes and every authorization_interval, from the
  // credentials the call presented.
  auto authorize = [&authenticator = authenticator_,
                    credentials = grpcutil::CredentialsOf(*ctx)]() -> absl::Status {
    if (authenticator.open()) return absl::OkStatus();
    absl::StatusOr<auth::Principal> principal =
        authenticator.Authenticate(credentials.authorization, credentials.certificate_identities);
    if (!principal.ok()) return principal.status();
    return auth::RequireRead(*principal);
  };
  return hub_.Subscribe(*req, config_.limits, std::move(authorize), client);
}

}  // namespace tidemark::query
