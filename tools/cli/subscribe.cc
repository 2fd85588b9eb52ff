#include "tools/cli/subscribe.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tools/cli/rpc_status.h"

namespace tidemark::cli {
namespace {

v1::AggregateValue ValueOf(const v1::WindowAggregate& w) {
  v1::AggregateValue v;
  v.set_count(w.count());
  v.set_sum(w.sum());
  v.set_min(w.min());
  v.set_max(w.max());
  v.set_avg(w.avg());
  v.set_first(w.first());
  v.set_last(w.last());
  return v;
}

}  // namespace

Subscriber::Subscriber(v1::QueryService::StubInterface& stub, v1::SubscribeRequest request,
                       const Output& output, Backoff backoff)
    : stub_(stub),
      request_(std::move(request)),
      output_(output),
      backoff_(backoff),
      token_(request_.resume_token()) {}

std::string Subscriber::resume_token() const {
  absl::MutexLock lock(&mu_);
  return token_;
}

void Subscriber::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  if (call_ != nullptr) call_->TryCancel();
}

bool Subscriber::WaitUnlessStopped(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopped_), delay);
}

void Subscriber::PrintHeader() const {
  if (output_.format == Format::kCsv) {
    std::printf(
        "window_start,window_size,series_id,canonical_key,count,avg,min,max,sum,first,last,"
        "version\n");
  } else if (output_.format == Format::kTable) {
    std::printf("  %-27s %6s %8s %s  series\n", "window_start", "window", "version",
                AggregateHeadings().c_str());
  }
}

bool Subscriber::Print(const v1::SubscribeResponse& response) {
  for (const v1::WindowAggregate& w : response.updates()) {
    const std::string start = FormatTime(w.window_start_us());
    const std::string size = FormatMicros(w.window_size_us());
    const v1::AggregateValue value = ValueOf(w);
    if (output_.format == Format::kJson) {
      nlohmann::json j = {{"window_start", start},
                          {"window_size", size},
                          {"series_id", w.series().series_id()},
                          {"canonical_key", w.series().canonical_key()}};
      AddAggregateJson(value, j);
      j["version"] = w.version();
      PrintJsonLine(j);
    } else if (output_.format == Format::kCsv) {
      std::printf("%s,%s,%ld,%s,%s,%ld\n", start.c_str(), size.c_str(), w.series().series_id(),
                  CsvField(w.series().canonical_key()).c_str(), AggregateCsv(value).c_str(),
                  w.version());
    } else {
      std::printf("  %-27s %6s %8s %s  %s\n", start.c_str(), size.c_str(),
                  absl::StrCat("v", w.version()).c_str(), AggregateColumns(value).c_str(),
                  w.series().canonical_key().c_str());
    }
  }
  // Live output: a reader at the other end of a pipe sees each update as it arrives.
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "tidemark: cannot write to stdout: %s\n", std::strerror(errno));
    return false;
  }
  printed_ += response.updates_size();
  return true;
}

int Subscriber::Finish(int code) const {
  const std::string token = resume_token();
  if (token.empty()) {
    std::fprintf(stderr, "tidemark: no resume token was received\n");
  } else if (code == 0) {
    std::fprintf(stderr, "tidemark: continue with --resume=%s\n", token.c_str());
  } else {
    // After an error the token may be the cause (OUT_OF_RANGE), so it is not offered as the
    // way to continue.
    std::fprintf(stderr, "tidemark: last resume token: %s\n", token.c_str());
  }
  return code;
}

int Subscriber::Run() {
  PrintHeader();
  std::minstd_rand random(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  absl::Duration delay = backoff_.initial;
  bool subscribed_before = false;
  // Ctrl-C ends a subscription successfully, unless none was ever confirmed (a wrong address,
  // a service that never answered): a script must not take that for success.
  auto stopped_by_user = [&] {
    if (subscribed_before) return Finish(0);
    std::fprintf(stderr, "tidemark: stopped before the query service confirmed a subscription\n");
    return Finish(1);
  };
  while (true) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return stopped_by_user();
      call_ = &context;
      request_.set_resume_token(token_);
    }
    std::unique_ptr<grpc::ClientReaderInterface<v1::SubscribeResponse>> reader =
        stub_.Subscribe(&context, request_);
    v1::SubscribeResponse response;
    bool received = false;
    bool output_failed = false;
    bool limit_reached = false;
    while (reader->Read(&response)) {
      if (!received) {
        // The first response confirms the subscription; saying so tells a person that the
        // silence which may follow is the absence of updates, not a hang.
        std::fprintf(stderr, subscribed_before ? "tidemark: subscribed again\n"
                                               : "tidemark: subscribed; Ctrl-C stops\n");
        received = subscribed_before = true;
      }
      if (!Print(response)) {
        output_failed = true;
        break;
      }
      // The token is taken only once its updates are printed, so that a resumed stream
      // repeats nothing and loses nothing.
      if (!response.resume_token().empty()) {
        absl::MutexLock lock(&mu_);
        token_ = response.resume_token();
      }
      if (output_.limit > 0 && printed_ >= output_.limit) {
        limit_reached = true;
        break;
      }
    }
    if (output_failed || limit_reached) context.TryCancel();
    const grpc::Status status = reader->Finish();
    bool stopped;
    {
      absl::MutexLock lock(&mu_);
      call_ = nullptr;
      stopped = stopped_;
    }
    if (output_failed) return Finish(1);
    if (limit_reached) return Finish(0);
    if (stopped) return stopped_by_user();
    if (!IsResumable(status.error_code())) {
      Fail(status);
      return Finish(1);
    }
    // A stream that delivered something was a success: the next failure starts afresh.
    if (received) delay = backoff_.initial;
    const absl::Duration wait = delay * jitter(random);
    const std::string why =
        status.ok() ? "the service ended the stream"
        : status.error_message().empty()
            ? std::string(StatusCodeName(status.error_code()))
            : absl::StrCat(StatusCodeName(status.error_code()), ": ", status.error_message());
    std::fprintf(stderr, "tidemark: %s; resuming in %s\n", why.c_str(),
                 absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))).c_str());
    if (WaitUnlessStopped(wait)) return stopped_by_user();
    delay = std::min(delay * 2, backoff_.max);
  }
}

int RunSubscribe(v1::QueryService::StubInterface& stub, const v1::SubscribeRequest& request,
                 const Output& output, process::ShutdownSignal& signal) {
  Subscriber subscriber(stub, request, output);
  std::thread watcher([&] {
    signal.Wait();
    subscriber.Stop();
  });
  const int code = subscriber.Run();
  // Wakes the watcher when the subscription ended by itself.
  process::ShutdownSignal::RequestStop();
  watcher.join();
  return code;
}

}  // namespace tidemark::cli
