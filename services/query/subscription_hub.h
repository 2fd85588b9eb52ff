#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "grpcpp/grpcpp.h"
#include "pqxx/connection"
#include "services/query/query_core.h"
#include "tidemark/v1/query.pb.h"

namespace tidemark::query {

/// One stored version of a window, at its position in the change log.
struct Change {
  int64_t change_id;
  v1::WindowAggregate aggregate;
  /// The memory it holds (mostly its series' dimensions), counted against the byte bound of
  /// each subscriber that queues it.
  size_t bytes = 0;
};

/// What a subscriber has queued and not yet written.
struct Backlog {
  size_t updates = 0;
  size_t bytes = 0;
};

struct SubscriptionMetrics {
  explicit SubscriptionMetrics(metrics::Registry& r);
  metrics::Gauge& subscribers;
  metrics::Counter& delivered;
  metrics::Counter& ended_slow;
  metrics::Counter& refused_full;
  metrics::Counter& refused_client_full;
  metrics::Histogram& delivery_lag;
};

class SubscriptionHub;

/// The server side of one Subscribe stream. The hub offers it every change after its start
/// position; it keeps those that match, and writes them one response at a time. More than
/// `buffer.updates` undelivered updates, or more than `buffer.bytes` of them, end it with
/// RESOURCE_EXHAUSTED instead of growing.
class SubscribeReactor final : public grpc::ServerWriteReactor<v1::SubscribeResponse> {
 public:
  /// `start_after`: the change id after which the stream starts; -1 for the hub's position
  /// when it joins.
  /// `authorize` says whether the caller's credentials still let it read (they are revoked
  /// and expire); it is asked before each batch of changes is offered, and by the hub every
  /// SubscriptionOptions::authorization_interval (CheckAuthorized), so an idle stream ends
  /// too. It may be empty.
  /// `progress_interval`: how often at most a response without updates moves the token past
  /// changes that matched nothing (SubscriptionOptions::progress_interval).
  SubscribeReactor(SubscriptionHub& hub, SeriesMatcher matcher, std::set<int64_t> window_sizes,
                   int64_t start_after, Backlog buffer, absl::Duration progress_interval,
                   SubscriptionMetrics& metrics, std::function<absl::Status()> authorize = {},
                   std::string client = "");

  /// Called by the hub thread, in change order. `position` is the last change id the hub has
  /// looked at; the stream's resume token reaches it once everything before is written.
  /// Whether it queued any of them.
  bool Offer(const std::vector<std::shared_ptr<const Change>>& changes, int64_t position);
  /// Ends the stream (idempotent).
  void End(const grpc::Status& status);
  /// Asks `authorize` and ends the stream with its refusal; false when it ended.
  bool CheckAuthorized();
  int64_t start_after() const { return start_after_; }
  /// Who opened it (SubscriptionHub::Subscribe), for the per-client limit.
  const std::string& client() const { return client_; }
  void set_start_after(int64_t id) { start_after_ = id; }
  /// How far the hub has read the log for it while it catches up (hub thread only).
  int64_t caught_up_to() const { return caught_up_to_; }
  void set_caught_up_to(int64_t id) { caught_up_to_ = id; }
  /// Its backlog when the hub last paused for its client to read (hub thread only).
  const std::optional<Backlog>& paced_at() const { return paced_at_; }
  void set_paced_at(Backlog backlog) { paced_at_ = backlog; }
  /// Updates queued and not yet written, and the memory they hold.
  Backlog backlog();
  bool ended();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  /// Writes in_flight_ with `token` as its resume token.
  void StartWriteLocked(int64_t token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SubscriptionHub& hub_;
  const SeriesMatcher matcher_;
  const std::set<int64_t> window_sizes_;
  int64_t start_after_;  // written by the hub thread before its first Offer
  int64_t caught_up_to_ = -1;
  std::optional<Backlog> paced_at_;
  const Backlog buffer_;  // the bounds
  const absl::Duration progress_interval_;
  SubscriptionMetrics& metrics_;
  const std::function<absl::Status()> authorize_;
  const std::string client_;
  absl::Mutex mu_;
  // Shared with the other subscribers it was offered to: memory grows with the changes
  // queued, not with the streams that queue them.
  std::deque<std::shared_ptr<const Change>> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t position_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t offered_up_to_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t written_position_ ABSL_GUARDED_BY(mu_) = -1;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  v1::SubscribeResponse in_flight_ ABSL_GUARDED_BY(mu_);
};

struct SubscriptionOptions {
  std::string pg_dsn;
  /// Poll for changes this often even without a notification (a lost connection drops them).
  absl::Duration poll_interval = absl::Seconds(1);
  /// Changes read per query.
  int fetch_batch = 1000;
  /// Undelivered updates beyond which a subscriber is ended.
  size_t subscriber_buffer = 10'000;
  /// Memory those updates may hold beyond which a subscriber is ended: every update carries
  /// its series' dimensions (up to 64 KiB), so a count alone bounds memory only loosely.
  size_t subscriber_buffer_bytes = 16 << 20;
  /// Open streams beyond which a new one is refused: each holds up to subscriber_buffer
  /// updates and subscriber_buffer_bytes, so together they are bounded too.
  size_t max_subscriptions = 1000;
  /// Open streams of one client beyond which its new one is refused, so that one client
  /// cannot take every place of the replica.
  size_t max_subscriptions_per_client = 250;
  /// A stream whose selector matched none of the changes since its last response is sent a
  /// response without updates, carrying the token past them, at most this often (and only
  /// when the log moved): a quiet subscription's token would otherwise stay where its last
  /// update left it, and after the writer's --subscription_retention pruned the log past it,
  /// resuming from it would be OUT_OF_RANGE although nothing was missed.
  absl::Duration progress_interval = absl::Seconds(30);
  /// How often every stream's credentials are checked again, changes or not (they are also
  /// checked before each batch of changes).
  absl::Duration authorization_interval = absl::Seconds(1);
};

/// Follows the `aggregate_changes` log (the writer's transactions append to it and NOTIFY)
/// with one connection and one thread, and fans every change out to the subscribers. A
/// subscriber that resumes from a token is first sent the changes it missed, a batch at a
/// time as it takes them (a gap larger than its buffer does not end it), between the passes
/// that serve the others.
class SubscriptionHub {
 public:
  SubscriptionHub(SubscriptionOptions options, SubscriptionMetrics& metrics,
                  std::shared_ptr<spdlog::logger> logger);
  /// Ends every stream with UNAVAILABLE and stops the thread.
  ~SubscriptionHub();

  /// Starts a stream for a request; errors end it at once. `authorize`: see SubscribeReactor.
  /// `client` names who asks (a principal): at most max_subscriptions_per_client streams are
  /// open for each; an empty one is not limited so.
  grpc::ServerWriteReactor<v1::SubscribeResponse>* Subscribe(
      const v1::SubscribeRequest& req, const QueryLimits& limits,
      std::function<absl::Status()> authorize = {}, const std::string& client = "");
  /// Called from OnDone: the hub forgets the reactor before it is deleted.
  void Remove(SubscribeReactor* reactor);
  /// Ends every stream with UNAVAILABLE (resume with the last token) and refuses new ones:
  /// the service is shutting down.
  void EndAll();

 private:
  void Run();
  /// What a pass leaves to do.
  enum class Next {
    kWait,          // nothing until a notification (or the poll interval)
    kContinue,      // a catch-up has more to read at once
    kWaitOnClient,  // a catch-up waits for its client to take what it was sent
  };
  /// One pass: registrations and one batch of each catch-up, then new changes. Throws on
  /// database errors.
  Next Step(pqxx::connection& conn);
  /// Ends the streams whose credentials were revoked or expired, every
  /// authorization_interval whether or not changes arrive, on a thread of its own so that a
  /// database that hangs does not delay it.
  void CheckAuthorizations();

  const SubscriptionOptions options_;
  SubscriptionMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;  // EndAll ran
  // Owned here until OnDone removes them; the hub thread offers to copies of these lists, so a
  // reactor finishing meanwhile stays alive until the offer returns.
  std::vector<std::shared_ptr<SubscribeReactor>> joining_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<SubscribeReactor>> active_ ABSL_GUARDED_BY(mu_);
  /// The last change id dispatched to the active subscribers (-1 until known).
  int64_t position_ ABSL_GUARDED_BY(mu_) = -1;
  /// Rows the next read of new changes asks for: fewer after a batch cut at the byte bound,
  /// growing back as batches fit (hub thread only).
  int live_limit_;
  std::thread thread_;
  std::thread authorization_thread_;
};

}  // namespace tidemark::query
