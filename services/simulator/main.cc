// simulator: a fleet of devices sending the reference JSON formats to ingest over gRPC.
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "common/config/config.h"
#include "common/grpc/security_flags.h"
#include "common/log/log.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "services/simulator/simulator_core.h"
#include "tidemark/v1/ingest.grpc.pb.h"

ABSL_FLAG(std::string, ingest, "127.0.0.1:50051", "Ingest service address");
ABSL_FLAG(int, devices, 100, "Number of devices");
ABSL_FLAG(double, turbine_share, 0.5, "Share of devices sending the turbine format");
ABSL_FLAG(double, rate, 1000, "Records per second, all devices together");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60), "How long to send (0: until stopped)");
ABSL_FLAG(int64_t, max_records, 0, "Stop after this many records (0: no limit)");
ABSL_FLAG(int, batch_size, 200, "Records per request");
ABSL_FLAG(double, percent_late, 5, "Percent of Timestream-format records sent late");
ABSL_FLAG(absl::Duration, late_time, absl::Seconds(75), "How late a late record is");
ABSL_FLAG(double, percent_clock_ahead, 2, "Percent of devices whose clock runs ahead");
ABSL_FLAG(absl::Duration, clock_ahead, absl::Minutes(30), "How far ahead those clocks run");
ABSL_FLAG(uint64_t, seed, 1, "Random seed");

namespace {

using namespace tidemark;

int Run(int argc, char** argv) {
  auto logger = log::MakeLogger("simulator");
  if (auto args =
          config::ParseFlagsAndEnvironment(argc, argv, "tidemark device simulator", logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  for (absl::Status s :
       {config::RequirePositive("devices", absl::GetFlag(FLAGS_devices)),
        config::RequirePositive("batch_size", absl::GetFlag(FLAGS_batch_size)),
        config::RequirePositive("rate", static_cast<int64_t>(absl::GetFlag(FLAGS_rate) * 1000))}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }
  simulator::Fleet fleet({.devices = absl::GetFlag(FLAGS_devices),
                          .turbine_share = absl::GetFlag(FLAGS_turbine_share),
                          .percent_late = absl::GetFlag(FLAGS_percent_late),
                          .late_time = absl::GetFlag(FLAGS_late_time),
                          .percent_clock_ahead = absl::GetFlag(FLAGS_percent_clock_ahead),
                          .clock_ahead = absl::GetFlag(FLAGS_clock_ahead),
                          .seed = absl::GetFlag(FLAGS_seed)});
  absl::StatusOr<grpcutil::ClientSecurity> security = grpcutil::ClientSecurityFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      security.ok() ? grpcutil::MakeChannel(absl::GetFlag(FLAGS_ingest), *security)
                    : absl::StatusOr<std::shared_ptr<grpc::Channel>>(security.status());
  if (!channel.ok()) {
    logger->critical("msg=\"{}\"", channel.status().message());
    return 2;
  }
  auto stub = v1::IngestService::NewStub(*channel);

  const double rate = absl::GetFlag(FLAGS_rate);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const int64_t max_records = absl::GetFlag(FLAGS_max_records);
  const int batch_size = absl::GetFlag(FLAGS_batch_size);
  const double turbine_fraction =
      static_cast<double>(fleet.turbine_devices()) / absl::GetFlag(FLAGS_devices);
  const absl::Time start = absl::Now();
  int64_t sent = 0, accepted = 0, rejected = 0, failed = 0, points = 0, turbine_sent = 0;
  absl::Time next_report = start + absl::Seconds(5);
  logger->info("msg=\"sending\" ingest={} devices={} rate={} duration={}",
               absl::GetFlag(FLAGS_ingest), absl::GetFlag(FLAGS_devices), rate,
               absl::FormatDuration(duration));
  while (true) {
    const absl::Time now = absl::Now();
    if (duration > absl::ZeroDuration() && now - start >= duration) break;
    if (max_records > 0 && sent >= max_records) break;
    const int64_t due = static_cast<int64_t>(rate * absl::ToDoubleSeconds(now - start)) - sent;
    if (due <= 0) {
      absl::SleepFor(absl::Milliseconds(2));
      continue;
    }
    int64_t count = std::min<int64_t>(due, batch_size);
    if (max_records > 0) count = std::min(count, max_records - sent);
    // Keep the formats at their share of the records sent so far.
    const bool turbine = fleet.turbine_devices() > 0 &&
                         (fleet.timestream_devices() == 0 ||
                          turbine_sent < static_cast<int64_t>(turbine_fraction * (sent + count)));
    simulator::JsonBatch batch = turbine ? fleet.NextTurbineBatch(static_cast<int>(count))
                                         : fleet.NextTimestreamBatch(static_cast<int>(count), now);
    v1::WriteJsonRequest req;
    req.set_format(batch.format);
    for (std::string& r : batch.records) req.add_records(std::move(r));
    v1::WriteResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    const grpc::Status status = stub->WriteJson(&ctx, req, &resp);
    const int64_t n = req.records_size();
    sent += n;
    if (turbine) turbine_sent += n;
    if (status.ok()) {
      accepted += resp.accepted();
      rejected += resp.rejected_size();
      // Every record of a batch has the same number of measures.
      points += resp.accepted() * (batch.points / std::max<int64_t>(1, n));
    } else {
      failed += n;
      logger->warn("msg=\"write failed\" code={} error=\"{}\"",
                   static_cast<int>(status.error_code()), status.error_message());
    }
    if (absl::Now() >= next_report) {
      logger->info("msg=\"progress\" sent={} accepted={} rejected={} failed={} rate_per_s={:.0f}",
                   sent, accepted, rejected, failed,
                   sent / absl::ToDoubleSeconds(absl::Now() - start));
      next_report += absl::Seconds(5);
    }
  }
  const nlohmann::json summary = {{"sent", sent},
                                  {"accepted", accepted},
                                  {"rejected", rejected},
                                  {"failed", failed},
                                  {"points_accepted", points},
                                  {"seconds", absl::ToDoubleSeconds(absl::Now() - start)}};
  std::printf("%s\n", summary.dump().c_str());
  logger->info("msg=\"done\" summary={}", summary.dump());
  return failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
