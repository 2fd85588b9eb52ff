#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace tidemark::cli {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// --where written with spaces around its parts, as lists often are, selects what it says: a
// value with a space after it used to match no series, silently.
TEST(CliArgs, SpacesAroundMatcherNamesAndValuesAreIgnored) {
  absl::StatusOr<std::vector<v1::DimensionMatcher>> m =
      ParseMatchers(" site = north , rack!= 7,device_id =~ t-(1|2) , name=~a{1, 3} ");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 4u);
  EXPECT_EQ((*m)[0].name(), "site");
  EXPECT_EQ((*m)[0].op(), v1::DimensionMatcher::OP_EQUAL);
  EXPECT_EQ((*m)[0].value(), "north");
  EXPECT_EQ((*m)[1].name(), "rack");
  EXPECT_EQ((*m)[1].op(), v1::DimensionMatcher::OP_NOT_EQUAL);
  EXPECT_EQ((*m)[1].value(), "7");
  EXPECT_EQ((*m)[2].op(), v1::DimensionMatcher::OP_REGEX);
  EXPECT_EQ((*m)[2].value(), "t-(1|2)");
  EXPECT_EQ((*m)[3].value(), "a{1, 3}") << "the space inside a regex is kept";
}

Invocation Given(const std::string& name) {
  Invocation in;
  in.command = name;
  in.measure = "speed";
  return in;
}

// A flag only some commands read is refused by the others, including those with a default
// (bucket, step, method): `aggregates --bucket=1d` used to print 5-minute windows silently.
TEST(CliCommands, AFlagTheCommandDoesNotReadIsRefused) {
  Invocation in = Given("aggregates");
  in.bucket = "1d";
  absl::StatusOr<cli::Command> c = Prepare(in, kNow);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find("--bucket applies to rollup"), std::string::npos)
      << c.status();
  in = Given("points");
  in.method = "spline";
  EXPECT_EQ(Prepare(in, kNow).status().code(), absl::StatusCode::kInvalidArgument);
  in = Given("rollup");
  in.step = "5m";
  EXPECT_EQ(Prepare(in, kNow).status().code(), absl::StatusCode::kInvalidArgument);
}

// Set by TIDEMARK_BUCKET, it is a default for rollup, not a mistake of another command.
TEST(CliCommands, AFlagFromTheEnvironmentIsADefaultNotAMistake) {
  Invocation in = Given("aggregates");
  in.bucket = "1d";
  in.from_environment = {"bucket"};
  EXPECT_TRUE(Prepare(in, kNow).ok()) << Prepare(in, kNow).status();
}

TEST(CliCommands, DefaultsApplyWhenNotGiven) {
  absl::StatusOr<cli::Command> c = Prepare(Given("interpolate"), kNow);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& interpolate = std::get<v1::InterpolateRequest>(c->request);
  EXPECT_EQ(interpolate.step_us(), 60'000'000);
  EXPECT_EQ(interpolate.method(), v1::INTERPOLATION_METHOD_LINEAR);
  c = Prepare(Given("rollup"), kNow);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(std::get<v1::RollupRequest>(c->request).bucket_us(), 3'600'000'000);
  c = Prepare(Given("points"), kNow);
  ASSERT_TRUE(c.ok()) << c.status();
  const v1::TimeRange& range = std::get<v1::ReadPointsRequest>(c->request).range();
  EXPECT_EQ(range.end_us() - 1 - range.start_us(), 3'600'000'000) << "one hour back";
}

// --since used to be dropped without a word when --start was given too.
TEST(CliCommands, StartAndSinceTogetherAreRefused) {
  Invocation in = Given("points");
  in.range = {.since = "15m", .start = "2026-11-22T00:00:00Z"};
  absl::StatusOr<cli::Command> c = Prepare(in, kNow);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find("--since"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace tidemark::cli
