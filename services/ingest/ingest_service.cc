#include "services/ingest/ingest_service.h"

#include <algorithm>
#include <atomic>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc/serve.h"
#include "common/time/time_units.h"
#include "google/protobuf/descriptor.h"
#include "services/ingest/json_mapping.h"

namespace tidemark::ingest {
namespace {

absl::Status DeliveryFailure(rd_kafka_resp_err_t err) {
  return absl::UnavailableError(
      absl::StrCat("Kafka did not acknowledge the events: ", rd_kafka_err2str(err),
                   "; nothing is lost by retrying the request"));
}

// The trailer that carries a failed stream's WriteResponse (see ingest.proto), and its size
// at most: clients refuse trailers beyond 8 KiB by default (GRPC_ARG_MAX_METADATA_SIZE) and
// proxies buffer a few KiB of headers, and the trailer is base64 on the wire (4/3 the bytes).
constexpr absl::string_view kStreamAnswerTrailer = "tidemark-write-response-bin";
constexpr size_t kMaxStreamAnswerTrailerBytes = 2048;

// `answer` as the trailer carries it: the first rejections that fit in
// kMaxStreamAnswerTrailerBytes, the others counted in rejected_unlisted.
std::string TrailerAnswer(const v1::WriteResponse& answer) {
  v1::WriteResponse out;
  out.set_accepted(answer.accepted());
  int listed = 0;
  size_t bytes = out.ByteSizeLong() + 11;  // room for rejected_unlisted
  for (const v1::RejectedRecord& r : answer.rejected()) {
    const size_t size = r.ByteSizeLong() + 4;  // tag and length
    if (bytes + size > kMaxStreamAnswerTrailerBytes) break;
    bytes += size;
    *out.add_rejected() = r;
    ++listed;
  }
  out.set_rejected_unlisted(answer.rejected_unlisted() + answer.rejected_size() - listed);
  return out.SerializeAsString();
}

// A stream's answer lists this many rejections at most (WriteResponse.rejected_unlisted).
constexpr int kMaxListedStreamRejections = 10'000;

// The bytes of a request, in one piece: in place when gRPC received them so, else copied.
absl::string_view Contiguous(const grpc::ByteBuffer& buffer, std::vector<grpc::Slice>& slices,
                             std::string& copy) {
  slices.clear();
  if (!buffer.Dump(&slices).ok()) return {};
  if (slices.size() == 1) {
    return {reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()};
  }
  copy.clear();
  copy.reserve(buffer.Length());
  for (const grpc::Slice& s : slices)
    copy.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return copy;
}

absl::Status NotAWriteRequest() {
  return absl::InvalidArgumentError(
      "the request is not a tidemark.v1.WriteRequest (its protobuf framing is broken)");
}

}  // namespace

IngestMetrics::IngestMetrics(metrics::Registry& r)
    : requests(r.AddCounter("tidemark_ingest_requests_total", "Write RPCs received")),
      accepted(
          r.AddCounter("tidemark_ingest_events_accepted_total", "Events acknowledged by Kafka")),
      rejected(
          r.AddCounter("tidemark_ingest_events_rejected_total", "Events rejected by validation")),
      kafka_failures(r.AddCounter("tidemark_ingest_kafka_failures_total",
                                  "Events Kafka failed to take or acknowledge")),
      write_latency(r.AddHistogram("tidemark_ingest_write_seconds",
                                   "Time from request to Kafka acknowledgement")),
      unauthenticated(r.AddCounter("tidemark_ingest_auth_refused_total",
                                   "Calls refused for their credentials",
                                   "reason=\"unauthenticated\"")),
      permission_denied(r.AddCounter("tidemark_ingest_auth_refused_total",
                                     "Calls refused for their credentials",
                                     "reason=\"permission_denied\"")) {
  // Every reason is exported from the start (at 0), so that rates and alerts have a series.
  const google::protobuf::EnumDescriptor* reasons = v1::RejectReason_descriptor();
  for (int i = 0; i < reasons->value_count(); ++i) {
    const google::protobuf::EnumValueDescriptor* v = reasons->value(i);
    const std::string name = absl::AsciiStrToLower(v->name());
    rejections_by_reason[v->number()] =
        &r.AddCounter("tidemark_ingest_rejections_total", "Events rejected, by reason",
                      absl::StrCat("reason=\"", absl::StripPrefix(name, "reject_reason_"), "\""));
  }
}

void IngestMetrics::CountRejected(const std::vector<v1::RejectedRecord>& records) {
  rejected.Add(records.size());
  for (const v1::RejectedRecord& r : records) {
    auto it = rejections_by_reason.find(r.reason());
    if (it != rejections_by_reason.end()) it->second->Add();
  }
}

namespace {

// Encodes `response` into `encoded` when the call answers in bytes (a typed call's answer
// is in place already).
grpc::Status Answer(const v1::WriteResponse& response, grpc::ByteBuffer* encoded) {
  if (encoded == nullptr) return grpc::Status::OK;
  bool own_buffer = false;
  return grpc::SerializationTraits<v1::WriteResponse>::Serialize(response, encoded, &own_buffer);
}

}  // namespace

// A unary write: counts Kafka acknowledgements and finishes the RPC on the last one.
class IngestServiceImpl::UnaryWrite final : public kafka::DeliverySink {
 public:
  // The answer goes to `typed`, or, when it is null, to `encoded`.
  UnaryWrite(grpc::ServerUnaryReactor* reactor, v1::WriteResponse* typed, grpc::ByteBuffer* encoded,
             IngestMetrics& metrics, size_t pending)
      : reactor_(reactor),
        resp_(typed != nullptr ? typed : &owned_),
        encoded_(typed != nullptr ? nullptr : encoded),
        metrics_(metrics),
        pending_(pending) {}

  v1::WriteResponse& response() { return *resp_; }

  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err) {
      absl::MutexLock lock(&mu_);
      if (status_.ok()) status_ = DeliveryFailure(err);
    }
    Settle(1);
  }

  // A request with nothing to make durable is answered at once.
  void AnswerNow() {
    const grpc::Status answer = Answer(*resp_, encoded_);
    grpc::ServerUnaryReactor* reactor = reactor_;
    delete this;
    reactor->Finish(answer);
  }

  // Records that were never queued settle at once with the failure that stopped them.
  void Abandon(size_t count, absl::Status why) {
    {
      absl::MutexLock lock(&mu_);
      if (status_.ok()) status_ = std::move(why);
    }
    Settle(count);
  }

 private:
  void Settle(size_t count) {
    if (pending_.fetch_sub(count) != count) return;
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      status = status_;
    }
    if (status.ok()) {
      metrics_.accepted.Add(accepted_count());
      metrics_.write_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    } else {
      metrics_.kafka_failures.Add(accepted_count());
    }
    grpc::Status answer = grpcutil::ToGrpcStatus(status);
    if (answer.ok()) answer = Answer(*resp_, encoded_);
    grpc::ServerUnaryReactor* reactor = reactor_;
    delete this;
    reactor->Finish(answer);
  }
  int64_t accepted_count() const { return resp_->accepted(); }

  grpc::ServerUnaryReactor* reactor_;
  v1::WriteResponse owned_;
  v1::WriteResponse* resp_;
  grpc::ByteBuffer* encoded_;
  IngestMetrics& metrics_;
  std::atomic<size_t> pending_;
  absl::Time start_ = absl::Now();
  absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

IngestServiceImpl::IngestServiceImpl(const IngestConfig& config, kafka::Producer& producer,
                                     IngestMetrics& metrics, auth::Authenticator& authenticator,
                                     std::shared_ptr<spdlog::logger> logger)
    : config_(config),
      producer_(producer),
      metrics_(metrics),
      authenticator_(authenticator),
      logger_(std::move(logger)) {}

absl::StatusOr<WritePermission> IngestServiceImpl::Permission(grpc::CallbackServerContext* ctx) {
  absl::StatusOr<auth::Principal> principal = grpcutil::CallPrincipal(authenticator_, *ctx);
  if (!principal.ok()) {
    metrics_.unauthenticated.Add();
    return principal.status();
  }
  if (absl::Status s = auth::RequireWrite(*principal); !s.ok()) {
    metrics_.permission_denied.Add();
    return s;
  }
  return WritePermission{.device_prefixes = principal->write_prefixes,
                         .explicit_versions = principal->explicit_versions};
}

namespace {
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpcutil::ToGrpcStatus(s));
  return reactor;
}
}  // namespace

std::vector<uint32_t> IngestServiceImpl::ProduceOrder(const std::vector<AcceptedRecord>& records) {
  return producer_.ProduceOrder(config_.raw_topic, records.size(),
                                [&](size_t i) -> absl::string_view { return records[i].key; });
}

grpc::ServerUnaryReactor* IngestServiceImpl::WritePrepared(grpc::CallbackServerContext* ctx,
                                                           PreparedBatch batch,
                                                           v1::WriteResponse* resp,
                                                           grpc::ByteBuffer* encoded_resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // All or nothing: a request queued in part and answered RESOURCE_EXHAUSTED would be retried
  // whole, and readings stamped with their arrival time (the turbine format) stored twice.
  const size_t count = batch.accepted.size();
  if (count > 0 && !producer_.Reserve(count)) {
    metrics_.kafka_failures.Add(static_cast<int64_t>(count));
    return FinishNow(ctx, absl::ResourceExhaustedError(absl::StrCat(
                              "ingest's queue to Kafka has no room for ", count,
                              " more events (--max_queued_events); none of this request was "
                              "queued: retry it after a pause")));
  }
  metrics_.CountRejected(batch.rejected);
  if (encoded_resp != nullptr) resp = nullptr;
  auto* write = new UnaryWrite(reactor, resp, encoded_resp, metrics_, batch.accepted.size());
  v1::WriteResponse& response = write->response();
  for (v1::RejectedRecord& r : batch.rejected) *response.add_rejected() = std::move(r);
  response.set_accepted(static_cast<int64_t>(batch.accepted.size()));
  if (batch.accepted.empty()) {
    write->AnswerNow();  // `write` is gone
    return reactor;
  }
  const std::vector<uint32_t> order = ProduceOrder(batch.accepted);
  for (size_t i = 0; i < order.size(); ++i) {
    const AcceptedRecord& rec = batch.accepted[order[i]];
    if (absl::Status s = producer_.Produce(config_.raw_topic, rec.key, rec.value, write); !s.ok()) {
      // `write` may be deleted by Abandon; nothing touches it afterwards.
      write->Abandon(order.size() - i, s);
      break;
    }
  }
  producer_.Release(count);
  return reactor;
}

grpc::ServerUnaryReactor* IngestServiceImpl::Write(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* req,
                                                   grpc::ByteBuffer* resp) {
  metrics_.requests.Add();
  absl::StatusOr<WritePermission> permission = Permission(ctx);
  if (!permission.ok()) return FinishNow(ctx, permission.status());
  std::vector<grpc::Slice> slices;
  std::string copy;
  EncodedRequest request;
  if (!request.Parse(Contiguous(*req, slices, copy))) return FinishNow(ctx, NotAWriteRequest());
  const int count = static_cast<int>(request.events().size());
  if (absl::Status s = ValidateRequestShape(count, config_.limits); !s.ok()) {
    return FinishNow(ctx, s);
  }
  return WritePrepared(ctx,
                       PrepareAndStamp(clock_, time::ToMicros(absl::Now()), request.events(), 0,
                                       config_.limits, *permission),
                       nullptr, resp);
}

grpc::ServerUnaryReactor* IngestServiceImpl::WriteJson(grpc::CallbackServerContext* ctx,
                                                       const v1::WriteJsonRequest* req,
                                                       v1::WriteResponse* resp) {
  metrics_.requests.Add();
  absl::StatusOr<WritePermission> permission = Permission(ctx);
  if (!permission.ok()) return FinishNow(ctx, permission.status());
  if (absl::Status s = ValidateRequestShape(req->records_size(), config_.limits); !s.ok()) {
    return FinishNow(ctx, s);
  }
  const v1::JsonMapping mapping =
      MergeMapping(MappingForFormat(req->format(), config_.default_json_mapping), req->mapping());
  // Records are validated against the clock's present; a record without a time (the
  // turbine format) is validated with it as its time, and takes its stamp as its time once
  // the accepted ones are stamped.
  const int64_t now_us = clock_.Now(time::ToMicros(absl::Now()));
  // Parse every record, keeping the position of each parsed event in the request so
  // that rejections name the record the client sent.
  google::protobuf::RepeatedPtrField<v1::Event> events;
  std::vector<int> positions;
  std::vector<v1::RejectedRecord> malformed;
  for (int i = 0; i < req->records_size(); ++i) {
    // Sized before parsing, so that an oversized record costs no parse.
    if (req->records(i).size() > static_cast<size_t>(config_.limits.max_event_bytes)) {
      v1::RejectedRecord& r = malformed.emplace_back();
      r.set_index(i);
      r.set_reason(v1::REJECT_REASON_PAYLOAD_TOO_LARGE);
      r.set_message(absl::StrCat("record is ", req->records(i).size(), " bytes; the limit is ",
                                 config_.limits.max_event_bytes));
      continue;
    }
    absl::StatusOr<v1::Event> e = JsonToEvent(req->records(i), mapping, now_us);
    if (!e.ok()) {
      v1::RejectedRecord& r = malformed.emplace_back();
      r.set_index(i);
      r.set_reason(v1::REJECT_REASON_MALFORMED_JSON);
      r.set_message(std::string(e.status().message()));
      continue;
    }
    *events.Add() = *std::move(e);
    positions.push_back(i);
  }
  PreparedBatch batch = PrepareEvents(events, now_us, 0, config_.limits, *permission);
  if (!batch.accepted.empty()) {
    StampAccepted(batch, clock_.Reserve(static_cast<int64_t>(batch.accepted.size()), now_us),
                  /*time_is_stamp=*/mapping.time_key().empty());
  }
  for (v1::RejectedRecord& r : batch.rejected) r.set_index(positions[r.index()]);
  batch.rejected.insert(batch.rejected.end(), malformed.begin(), malformed.end());
  std::sort(batch.rejected.begin(), batch.rejected.end(),
            [](const auto& a, const auto& b) { return a.index() < b.index(); });
  return WritePrepared(ctx, std::move(batch), resp);
}

// The deliveries of one message of a stream, passed on to the stream: when the last one
// arrives, the time from the message to Kafka's acknowledgement of all its events is observed
// as a unary Write's is (tidemark_ingest_write_seconds). Deletes itself after the last.
class MessageDeliveries final : public kafka::DeliverySink {
 public:
  MessageDeliveries(kafka::DeliverySink& stream, IngestMetrics& metrics, size_t pending)
      : stream_(stream), metrics_(metrics), pending_(pending) {}

  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err) failed_ = true;
    kafka::DeliverySink& stream = stream_;
    Settle(1);
    stream.OnDelivery(err);  // last: it may finish the stream
  }
  // Events that were never queued: the stream accounts for them itself.
  void Abandon(size_t count) {
    failed_ = true;
    Settle(count);
  }

 private:
  void Settle(size_t count) {
    if (pending_.fetch_sub(count) != count) return;
    if (!failed_) metrics_.write_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    delete this;
  }

  kafka::DeliverySink& stream_;
  IngestMetrics& metrics_;
  std::atomic<size_t> pending_;
  std::atomic<bool> failed_ = false;
  const absl::Time start_ = absl::Now();
};

// A client stream: reads while fewer than max_inflight_per_stream records await Kafka,
// and answers once the client has finished and every record is settled. StartRead and
// Finish are called outside the lock: Finish may run OnDone, which deletes this.
class IngestServiceImpl::StreamWrite final : public grpc::ServerReadReactor<grpc::ByteBuffer>,
                                             public kafka::DeliverySink {
 public:
  StreamWrite(IngestServiceImpl& service, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp)
      : service_(service), ctx_(ctx), encoded_resp_(resp) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    {
      // A message that arrives once the service is shutting down is not written: the status
      // says how many events were acknowledged, and the client sends the rest elsewhere.
      absl::MutexLock lock(&mu_);
      if (stopping_ || finished_) {
        reading_ = false;
        return;
      }
    }
    if (!ok) {
      Step step;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        reading_done_ = true;
        step = NextStepLocked();
      }
      Take(step);
      return;
    }
    service_.metrics_.requests.Add();
    // The credentials are checked again for every message, so that a token revoked or
    // expired while its stream is open stops writing within the credentials' reload interval
    // (docs/security.md), as it does for new calls.
    absl::StatusOr<WritePermission> permission = service_.Permission(ctx_);
    if (!permission.ok()) {
      Step step;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        Fail(permission.status());
        step = NextStepLocked();
      }
      Take(step);
      return;
    }
    if (!parsed_.Parse(Contiguous(request_, slices_, copy_))) {
      Step step;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        Fail(NotAWriteRequest());
        step = NextStepLocked();
      }
      Take(step);
      return;
    }
    // A message is bounded like a Write: one message of millions of (empty) events would
    // hold a rejection each in memory, and one of more than --max_queued_events valid ones
    // could never be queued whole, whatever the pause.
    if (const int count = static_cast<int>(parsed_.events().size());
        count > service_.config_.limits.max_events_per_request) {
      Step step;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        Fail(absl::InvalidArgumentError(absl::StrCat(
            "a WriteStream message has ", count, " events; send at most ",
            service_.config_.limits.max_events_per_request,
            " per message. Nothing of it was written; the events of earlier messages are "
            "answered as usual")));
        step = NextStepLocked();
      }
      Take(step);
      return;
    }
    PreparedBatch batch =
        PrepareAndStamp(service_.clock_, time::ToMicros(absl::Now()), parsed_.events(), next_index_,
                        service_.config_.limits, *permission);
    next_index_ += static_cast<int64_t>(parsed_.events().size());
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      // Stop() ran while this message was checked: it may have finished the stream already,
      // with a count this message's events would not be in. Nothing of it is written.
      if (stopping_ || finished_) return;
      service_.metrics_.CountRejected(batch.rejected);
      for (v1::RejectedRecord& r : batch.rejected) {
        if (response_.rejected_size() < kMaxListedStreamRejections) {
          *response_.add_rejected() = std::move(r);
        } else {
          response_.set_rejected_unlisted(response_.rejected_unlisted() + 1);
        }
      }
      inflight_ += static_cast<int64_t>(batch.accepted.size());
    }
    size_t queued = 0;
    absl::Status produce_status;
    auto* deliveries = batch.accepted.empty()
                           ? nullptr
                           : new MessageDeliveries(*this, service_.metrics_, batch.accepted.size());
    // Streams reserve their room too, so that a unary Write's reservation holds.
    if (deliveries != nullptr && !service_.producer_.Reserve(batch.accepted.size())) {
      produce_status = absl::ResourceExhaustedError(
          "ingest's queue to Kafka is full (--max_queued_events); send the rest after a pause");
    } else if (deliveries != nullptr) {
      for (uint32_t i : service_.ProduceOrder(batch.accepted)) {
        const AcceptedRecord& rec = batch.accepted[i];
        produce_status =
            service_.producer_.Produce(service_.config_.raw_topic, rec.key, rec.value, deliveries);
        if (!produce_status.ok()) break;
        ++queued;
      }
      service_.producer_.Release(batch.accepted.size());
    }
    const size_t unqueued = batch.accepted.size() - queued;
    if (unqueued > 0) {
      service_.metrics_.kafka_failures.Add(unqueued);
      deliveries->Abandon(unqueued);
    }
    Step step;
    {
      absl::MutexLock lock(&mu_);
      inflight_ -= static_cast<int64_t>(unqueued);
      if (!produce_status.ok()) Fail(produce_status);
      step = NextStepLocked();
    }
    Take(step);
  }

  void OnDelivery(rd_kafka_resp_err_t err) override {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      --inflight_;
      // Counted as they come, so that a long-lived stream shows in the rates (and in the
      // rejection ratio's denominator) while it runs, not only when it ends.
      if (err) {
        service_.metrics_.kafka_failures.Add();
        Fail(DeliveryFailure(err));
      } else {
        service_.metrics_.accepted.Add();
        ++accepted_;
      }
      step = NextStepLocked();
    }
    Take(step);
  }

  void OnDone() override {
    service_.ForgetStream(this);
    delete this;
  }

  // The service is shutting down: read no more, and finish once what was queued is settled,
  // even with a read outstanding (it completes, not ok, after the finish).
  void Stop() {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      stopping_ = true;
      // A client that has sent everything is answered as usual once it is settled.
      if (!reading_done_) {
        Fail(absl::UnavailableError(
            "ingest is shutting down; send the events not acknowledged to another replica"));
      }
      step = NextStepLocked();
    }
    Take(step);
  }

 private:
  struct Step {
    bool read = false;
    std::optional<grpc::Status> finish;
  };

  void Fail(absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (status_.ok()) status_ = std::move(s);
    reading_done_ = true;
  }

  Step NextStepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    // A failed stream (Kafka, credentials) or a stopped one finishes even with a read
    // outstanding, which completes, not ok, after the finish: a client that waits without
    // sending learns of the failure now, not when it next sends or closes.
    if (finished_ || (reading_ && !stopping_ && status_.ok())) return step;
    if (!reading_done_) {
      if (inflight_ < service_.config_.max_inflight_per_stream) {
        reading_ = true;
        step.read = true;
      }
      return step;
    }
    if (inflight_ > 0) return step;
    finished_ = true;
    response_.set_accepted(accepted_);
    if (!status_.ok()) {
      // Events of earlier messages may already be durable: say how many, so that a client
      // does not take the failure for "nothing was stored".
      status_ = absl::Status(status_.code(),
                             absl::StrCat(status_.message(), " (", accepted_,
                                          " events of this stream were acknowledged by Kafka "
                                          "before it ended and will be stored)"));
      // gRPC sends no response message with a failure: the answer so far (the count and the
      // first rejected records) goes in a trailer instead.
      ctx_->AddTrailingMetadata(std::string(kStreamAnswerTrailer), TrailerAnswer(response_));
    }
    step.finish = grpcutil::ToGrpcStatus(status_);
    if (step.finish->ok()) step.finish = Answer(response_, encoded_resp_);
    return step;
  }

  void Take(const Step& step) {
    if (step.read) StartRead(&request_);
    if (step.finish) Finish(*step.finish);
  }

  IngestServiceImpl& service_;
  grpc::CallbackServerContext* const ctx_;  // valid until OnDone
  grpc::ByteBuffer* encoded_resp_;
  // The message being read, and where its bytes are found (reused from message to message).
  grpc::ByteBuffer request_;
  std::vector<grpc::Slice> slices_;
  std::string copy_;
  EncodedRequest parsed_;
  int64_t next_index_ = 0;  // a long-lived stream may pass 2^31 events
  absl::Mutex mu_;
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  // A read is outstanding (the constructor starts the first).
  bool reading_ ABSL_GUARDED_BY(mu_) = true;
  bool reading_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Stop() ran
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  v1::WriteResponse response_ ABSL_GUARDED_BY(mu_);
};

// A stream whose credentials were refused: answered at once, without reading.
class IngestServiceImpl::RefusedStream final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const absl::Status& why) { Finish(grpcutil::ToGrpcStatus(why)); }
  void OnDone() override { delete this; }
};

grpc::ServerReadReactor<grpc::ByteBuffer>* IngestServiceImpl::WriteStream(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp) {
  absl::StatusOr<WritePermission> permission = Permission(ctx);
  if (!permission.ok()) return new RefusedStream(permission.status());
  absl::MutexLock lock(&streams_mu_);
  if (shutting_down_) return new RefusedStream(absl::UnavailableError("ingest is shutting down"));
  auto* stream = new StreamWrite(*this, ctx, resp);
  streams_.insert(stream);
  return stream;
}

void IngestServiceImpl::ForgetStream(StreamWrite* stream) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(stream);
}

void IngestServiceImpl::BeginShutdown() {
  // Under the lock, so that no stream is deleted meanwhile: gRPC runs a stream's OnDone
  // (which takes the lock to leave) on its own threads, never inside Finish.
  absl::MutexLock lock(&streams_mu_);
  shutting_down_ = true;
  for (StreamWrite* stream : streams_) stream->Stop();
}

}  // namespace tidemark::ingest
