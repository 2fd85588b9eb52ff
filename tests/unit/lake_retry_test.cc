// RetryingLake: transient failures of one request are retried there, others are not.
#include <deque>

#include "gtest/gtest.h"
#include "services/archive/lake.h"

namespace tidemark::archive {
namespace {

// A lake whose requests fail with the queued statuses first, then succeed; counts the calls.
class FlakyLake final : public Lake {
 public:
  explicit FlakyLake(std::deque<absl::Status> failures) : failures_(std::move(failures)) {}
  absl::Status Put(const std::string&, absl::string_view) override { return Next(); }
  absl::StatusOr<std::string> Get(const std::string&) override {
    if (absl::Status s = Next(); !s.ok()) return s;
    return std::string("contents");
  }
  absl::Status Delete(const std::string&) override { return Next(); }
  absl::StatusOr<std::vector<std::string>> List(const std::string&) override {
    if (absl::Status s = Next(); !s.ok()) return s;
    return std::vector<std::string>{"a", "b"};
  }
  std::string Describe() const override { return "flaky"; }
  int calls = 0;

 private:
  absl::Status Next() {
    ++calls;
    if (failures_.empty()) return absl::OkStatus();
    absl::Status s = failures_.front();
    failures_.pop_front();
    return s;
  }
  std::deque<absl::Status> failures_;
};

constexpr LakeRetryPolicy kQuick{
    .attempts = 3, .backoff = {.initial = absl::Milliseconds(1), .max = absl::Milliseconds(2)}};

struct Wrapped {
  FlakyLake* flaky;
  std::unique_ptr<Lake> lake;
};
Wrapped Wrap(std::deque<absl::Status> failures) {
  auto flaky = std::make_unique<FlakyLake>(std::move(failures));
  FlakyLake* raw = flaky.get();
  return {raw, RetryingLake(std::move(flaky), kQuick)};
}

TEST(RetryingLake, ATransientFailureCostsOneMoreRequest) {
  auto w = Wrap({absl::UnavailableError("503 SlowDown")});
  EXPECT_TRUE(w.lake->Put("x", "data").ok());
  EXPECT_EQ(w.flaky->calls, 2);

  w = Wrap({absl::DeadlineExceededError("timed out"), absl::UnavailableError("500")});
  absl::StatusOr<std::string> got = w.lake->Get("x");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "contents");
  EXPECT_EQ(w.flaky->calls, 3);

  w = Wrap({absl::UnavailableError("reset")});
  absl::StatusOr<std::vector<std::string>> listed = w.lake->List("");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), 2u);
  w = Wrap({absl::UnavailableError("reset")});
  EXPECT_TRUE(w.lake->Delete("x").ok());
  EXPECT_EQ(w.flaky->calls, 2);
}

TEST(RetryingLake, GivesUpAfterItsAttemptsWithTheLastError) {
  auto w = Wrap({absl::UnavailableError("1"), absl::UnavailableError("2"),
                 absl::UnavailableError("3"), absl::UnavailableError("4")});
  const absl::Status s = w.lake->Put("x", "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "3");
  EXPECT_EQ(w.flaky->calls, 3);
}

TEST(RetryingLake, RefusalsAreNotRetried) {
  for (const absl::Status& refusal :
       {absl::PermissionDeniedError("AccessDenied"), absl::InvalidArgumentError("bad key"),
        absl::NotFoundError("no such key"), absl::FailedPreconditionError("bucket gone")}) {
    auto w = Wrap({refusal});
    EXPECT_EQ(w.lake->Get("x").status(), refusal);
    EXPECT_EQ(w.flaky->calls, 1) << refusal;
  }
}

}  // namespace
}  // namespace tidemark::archive
