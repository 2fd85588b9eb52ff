#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/auth/authenticator.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "services/ingest/ingest_core.h"
#include "tidemark/v1/ingest.grpc.pb.h"

namespace tidemark::ingest {

struct IngestConfig {
  std::string raw_topic = "tidemark.raw";
  ValidationLimits limits;
  /// The mapping WriteJson uses for JSON_FORMAT_UNSPECIFIED.
  v1::JsonMapping default_json_mapping;
  /// Records a WriteStream may have waiting for Kafka before it stops reading.
  int max_inflight_per_stream = 50'000;
};

struct IngestMetrics {
  explicit IngestMetrics(metrics::Registry& r);
  metrics::Counter& requests;
  metrics::Counter& accepted;
  metrics::Counter& rejected;
  metrics::Counter& kafka_failures;
  metrics::Histogram& write_latency;
  /// Calls refused for their credentials, by reason (unauthenticated, permission_denied).
  metrics::Counter& unauthenticated;
  metrics::Counter& permission_denied;
  /// tidemark_ingest_rejections_total{reason="missing_device_id"...}, one per RejectReason.
  std::map<int, metrics::Counter*> rejections_by_reason;
  /// Counts `records` in `rejected` and each under its reason.
  void CountRejected(const std::vector<v1::RejectedRecord>& records);
};

/// Write and WriteStream take their requests as bytes (EncodedRequest), WriteJson as a
/// message.
using IngestServiceBase = v1::IngestService::WithRawCallbackMethod_Write<
    v1::IngestService::WithRawCallbackMethod_WriteStream<v1::IngestService::CallbackService>>;

/// IngestService over the callback API. Every RPC answers only after Kafka acknowledged
/// each accepted event (or failed to), and never blocks a gRPC thread while waiting.
/// Each call needs credentials with a write scope (UNAUTHENTICATED / PERMISSION_DENIED);
/// events outside the scope's devices or versions are rejected per record.
class IngestServiceImpl final : public IngestServiceBase {
 public:
  IngestServiceImpl(const IngestConfig& config, kafka::Producer& producer, IngestMetrics& metrics,
                    auth::Authenticator& authenticator, std::shared_ptr<spdlog::logger> logger);

  /// A WriteRequest, answered with a WriteResponse.
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                  grpc::ByteBuffer* resp) override;
  /// WriteRequests, answered with one WriteResponse.
  grpc::ServerReadReactor<grpc::ByteBuffer>* WriteStream(grpc::CallbackServerContext* ctx,
                                                         grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* WriteJson(grpc::CallbackServerContext* ctx,
                                      const v1::WriteJsonRequest* req,
                                      v1::WriteResponse* resp) override;

  /// Ends open WriteStreams with UNAVAILABLE once what they queued is settled, saying how many
  /// of their events Kafka acknowledged, and refuses new ones: otherwise they would keep
  /// writing through the shutdown grace and then be cancelled without that count.
  void BeginShutdown();

 private:
  class UnaryWrite;
  class StreamWrite;
  class RefusedStream;
  /// Answers in `resp`, or, when `encoded_resp` is given, in it (resp is then ignored).
  grpc::ServerUnaryReactor* WritePrepared(grpc::CallbackServerContext* ctx, PreparedBatch batch,
                                          v1::WriteResponse* resp,
                                          grpc::ByteBuffer* encoded_resp = nullptr);
  /// The order in which to produce a request's records: partition by partition.
  std::vector<uint32_t> ProduceOrder(const std::vector<AcceptedRecord>& records);
  /// Called from a stream's OnDone.
  void ForgetStream(StreamWrite* stream);
  /// What the call's credentials may write; UNAUTHENTICATED or PERMISSION_DENIED.
  absl::StatusOr<WritePermission> Permission(grpc::CallbackServerContext* ctx);

  const IngestConfig config_;
  kafka::Producer& producer_;
  IngestMetrics& metrics_;
  auth::Authenticator& authenticator_;
  std::shared_ptr<spdlog::logger> logger_;
  IngestClock clock_;
  // Open streams, for BeginShutdown; a stream leaves in its OnDone.
  absl::Mutex streams_mu_;
  std::set<StreamWrite*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool shutting_down_ ABSL_GUARDED_BY(streams_mu_) = false;
};

}  // namespace tidemark::ingest
