#include "common/config/config.h"

#include <cstdlib>

#include "absl/flags/flag.h"
#include "common/log/log.h"
#include "gtest/gtest.h"
#include "tools/devbroker/dev_broker.h"

ABSL_FLAG(int, config_test_batch, 10, "a setting for the test");
ABSL_FLAG(std::string, config_test_name, "default", "another setting for the test");
ABSL_FLAG(std::string, tq, "", "a setting with a short name, for the test");
ABSL_FLAG(bool, config_test_switch, false, "a boolean setting for the test");

namespace tidemark::config {
namespace {

TEST(Config, EnvironmentNameIsPrefixedUpperCase) {
  EXPECT_EQ(EnvironmentName("kafka_brokers"), "TIDEMARK_KAFKA_BROKERS");
}

// Runs first (tests run in order): it fails before the command line is parsed, so the test
// below can still parse it once.
TEST(Config, BadEnvironmentValueNamesTheSetting) {
  setenv("TIDEMARK_CONFIG_TEST_BATCH", "many", 1);
  char prog[] = "test";
  char* argv[] = {prog};
  absl::StatusOr<std::vector<std::string>> r = ParseFlagsAndEnvironment(1, argv, "test");
  unsetenv("TIDEMARK_CONFIG_TEST_BATCH");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("TIDEMARK_CONFIG_TEST_BATCH=\"many\""),
            absl::string_view::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("--config_test_batch"), absl::string_view::npos);
}

// absl exits 1 on these with a line of its own; they are setting errors like the
// environment's (exit 2 with the setting named) and a near miss names the flag meant.
TEST(Config, BadCommandLineNamesTheSettingAndTheNearestFlag) {
  char prog[] = "test";
  char typo[] = "--config_test_bach=3";
  char* argv1[] = {prog, typo};
  absl::StatusOr<std::vector<std::string>> r = ParseFlagsAndEnvironment(2, argv1, "test");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("unknown flag --config_test_bach (did you mean "
                                      "--config_test_batch?)"),
            absl::string_view::npos)
      << r.status();

  char far[] = "-zzzzzzzzzzzzzzzz";
  char* argv2[] = {prog, far};
  r = ParseFlagsAndEnvironment(2, argv2, "test");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("--help lists the flags"), absl::string_view::npos)
      << r.status();

  char bad_value[] = "--config_test_batch=many";
  char* argv3[] = {prog, bad_value};
  r = ParseFlagsAndEnvironment(2, argv3, "test");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("--config_test_batch=\"many\" (TIDEMARK_CONFIG_TEST_BATCH)"),
            absl::string_view::npos)
      << r.status();
}

// What absl accepts stays accepted: its own names, --undefok, `--name value` with a value
// that starts with '-', `--nobool`, positional arguments and everything after `--`.
TEST(Config, TheCommandLineCheckKeepsWhatAbslAccepts) {
  auto check = [](std::vector<std::string> args) {
    args.insert(args.begin(), "test");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return CheckCommandLine(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_TRUE(check({"--version"}).ok());
  EXPECT_TRUE(check({"--helpon=config_test"}).ok());
  EXPECT_TRUE(check({"--undefok=not_a_flag,other", "--not_a_flag=3", "-other"}).ok());
  EXPECT_TRUE(check({"--undefok", "not_a_flag", "--not_a_flag"}).ok());
  EXPECT_TRUE(check({"--config_test_name", "-starts-with-dash", "positional", "-"}).ok());
  EXPECT_TRUE(check({"--", "--not_a_flag"}).ok());
  EXPECT_TRUE(check({"-config_test_batch=4"}).ok());
  EXPECT_TRUE(check({"--noconfig_test_switch", "--config_test_switch", "positional"}).ok());
  EXPECT_FALSE(check({"--not_a_flag"}).ok());
  const absl::Status s = check({"--config_test_batch", "many"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("--config_test_batch=\"many\""), absl::string_view::npos) << s;
}

// A misspelled variable used to be ignored without a word, leaving the default in force.
TEST(Config, AMisspelledVariableIsNamedWithTheOneMeant) {
  setenv("TIDEMARK_CONFIG_TEST_BACH", "25", 1);
  setenv("TIDEMARK_CONFIG_TEST_NAME", "fine", 1);
  setenv("TIDEMARK_LOG_LEVEL", "info", 1);
  setenv("TIDEMARK_A_SETTING_OF_ANOTHER_PROGRAM", "1", 1);
  // Two edits from TIDEMARK_TQ, but short names are that close to too many others.
  setenv("TIDEMARK_DB", "tidemark", 1);
  const std::vector<std::string> warnings = MisspelledEnvironment();
  unsetenv("TIDEMARK_CONFIG_TEST_BACH");
  unsetenv("TIDEMARK_CONFIG_TEST_NAME");
  unsetenv("TIDEMARK_LOG_LEVEL");
  unsetenv("TIDEMARK_A_SETTING_OF_ANOTHER_PROGRAM");
  unsetenv("TIDEMARK_DB");
  EXPECT_EQ(warnings, std::vector<std::string>{
                          "environment variable TIDEMARK_CONFIG_TEST_BACH sets nothing; did you "
                          "mean TIDEMARK_CONFIG_TEST_BATCH?"});
}

TEST(Config, EnvironmentSetsFlagsAndTheCommandLineWins) {
  setenv("TIDEMARK_CONFIG_TEST_BATCH", "25", 1);
  setenv("TIDEMARK_CONFIG_TEST_NAME", "from-env", 1);
  char prog[] = "test";
  // `--name value`: the value is the flag's, not a positional argument or a flag.
  char flag[] = "--config_test_name";
  char value[] = "from-flag";
  char positional[] = "points";
  char* argv[] = {prog, flag, value, positional};
  absl::StatusOr<std::vector<std::string>> r = ParseFlagsAndEnvironment(4, argv, "test");
  unsetenv("TIDEMARK_CONFIG_TEST_BATCH");
  unsetenv("TIDEMARK_CONFIG_TEST_NAME");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_config_test_batch), 25);
  EXPECT_EQ(absl::GetFlag(FLAGS_config_test_name), "from-flag");
  EXPECT_EQ(*r, std::vector<std::string>{"points"});
}

TEST(Config, RangeChecksNameTheSetting) {
  absl::Status s = RequirePositive("batch_max_records", 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TIDEMARK_BATCH_MAX_RECORDS"), absl::string_view::npos) << s;
  EXPECT_FALSE(RequirePositive("batch_max_age", absl::ZeroDuration()).ok());
  EXPECT_FALSE(RequireNonEmpty("pg_dsn", "").ok());
  EXPECT_TRUE(RequirePositive("workers", 4).ok());
  EXPECT_TRUE(RequireNonNegative("allowed_lateness", absl::ZeroDuration()).ok());
  s = RequireNonNegative("allowed_lateness", absl::Minutes(-1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TIDEMARK_ALLOWED_LATENESS"), absl::string_view::npos) << s;
  // "inf" parses as a duration, and would overflow the timestamps it is added to.
  s = RequireNonNegative("allowed_lateness", absl::InfiniteDuration());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("finite"), absl::string_view::npos) << s;
  EXPECT_FALSE(RequirePositive("max_future", absl::InfiniteDuration()).ok());
  EXPECT_FALSE(RequirePositive("max_future", absl::Hours(24 * 365 * 200)).ok());
  EXPECT_TRUE(RequirePositive("max_future", absl::Hours(24 * 365)).ok());
  EXPECT_FALSE(RequireAtLeast("poll", absl::InfiniteDuration(), absl::Milliseconds(1)).ok());
  EXPECT_TRUE(RequireAtLeast("max_queued_events", 10'000, 10'000, "--max_events_per_request").ok());
  s = RequireAtLeast("max_queued_events", 9'999, 10'000, "--max_events_per_request");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--max_events_per_request"), absl::string_view::npos) << s;
  s = RequireOneOf("kafka_compression", "brotli", {"lz4", "zstd"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TIDEMARK_KAFKA_COMPRESSION"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("brotli"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("lz4, zstd"), absl::string_view::npos) << s;
  EXPECT_TRUE(RequireOneOf("kafka_compression", "zstd", {"lz4", "zstd"}).ok());
  EXPECT_TRUE(RequireTopicName("raw_topic", "tidemark.raw_v2-eu").ok());
  for (const char* bad : {"", "tidemark raw", "tidemark/raw", "..", "töpic"}) {
    s = RequireTopicName("raw_topic", bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("TIDEMARK_RAW_TOPIC"), absl::string_view::npos) << s;
  }
  EXPECT_FALSE(RequireTopicName("raw_topic", std::string(250, 'a')).ok());
  EXPECT_TRUE(RequireTopicName("raw_topic", std::string(249, 'a')).ok());
}

TEST(DevBrokerTopics, ParsesAndRejects) {
  absl::StatusOr<std::vector<devbroker::TopicSpec>> t =
      devbroker::ParseTopics("tidemark.raw:12,tidemark.late:3");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].name, "tidemark.raw");
  EXPECT_EQ((*t)[0].partitions, 12);
  EXPECT_FALSE(devbroker::ParseTopics("tidemark.raw").ok());
  EXPECT_FALSE(devbroker::ParseTopics("tidemark.raw:0").ok());
  EXPECT_FALSE(devbroker::ParseTopics(":3").ok());
}

// TIDEMARK_LOG_LEVEL: spdlog's own parser makes any unknown name (INFO, information, a typo)
// `off`, which silenced a service, including the line naming a bad setting.
TEST(Config, LogLevelNamesInAnyCaseAndNothingElse) {
  EXPECT_EQ(log::ParseLevel(""), spdlog::level::info);
  EXPECT_EQ(log::ParseLevel("INFO"), spdlog::level::info);
  EXPECT_EQ(log::ParseLevel(" Debug "), spdlog::level::debug);
  EXPECT_EQ(log::ParseLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(log::ParseLevel("WARN"), spdlog::level::warn);
  EXPECT_EQ(log::ParseLevel("err"), spdlog::level::err);
  EXPECT_EQ(log::ParseLevel("off"), spdlog::level::off);
  for (const char* wrong : {"information", "bogus", "inf", "1"}) {
    EXPECT_EQ(log::ParseLevel(wrong), std::nullopt) << wrong;
  }
}

}  // namespace
}  // namespace tidemark::config
