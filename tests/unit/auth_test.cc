#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/auth/authenticator.h"
#include "common/auth/credentials.h"
#include "gtest/gtest.h"
#include "services/ingest/ingest_core.h"

namespace tidemark::auth {
namespace {

std::string Line(const std::string& name, const std::string& token, const std::string& scopes) {
  return absl::StrCat("token ", name, " sha256:", TokenSha256(token), " ", scopes);
}

TEST(Credentials, ParsesTokensCertificatesScopesAndExpiry) {
  auto c = ParseCredentials(absl::StrCat(
      "# fleets\n", Line("north", "t1", "write:north-,write:n2-"), "\n\n",
      Line("ops", "t2", "read,write,explicit_version"),
      " expires=2030-01-02T03:04:05Z   # trailing comment\n",
      "cert laptop ops.example.com read\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  const Principal& north = c->by_token_sha256.at(TokenSha256("t1"));
  EXPECT_EQ(north.name, "north");
  EXPECT_FALSE(north.read);
  EXPECT_TRUE(north.MayWriteDevice("north-1"));
  EXPECT_TRUE(north.MayWriteDevice("n2-x"));
  EXPECT_FALSE(north.MayWriteDevice("south-1"));
  EXPECT_FALSE(north.explicit_versions);
  const Principal& ops = c->by_token_sha256.at(TokenSha256("t2"));
  EXPECT_TRUE(ops.read && ops.explicit_versions && ops.MayWriteDevice("anything"));
  EXPECT_EQ(ops.expires, absl::FromUnixSeconds(1893553445));
  EXPECT_TRUE(c->by_certificate.at("ops.example.com").read);
}

TEST(Credentials, RefusesEveryMistakeNamingTheLine) {
  for (const std::string& bad : {
           std::string("token a sha256:abc read"),                      // short digest
           absl::StrCat("token a ", TokenSha256("x"), " read"),         // no sha256: prefix
           absl::StrCat("token a sha256:", TokenSha256("x"), " admin"),  // unknown scope
           absl::StrCat("token a sha256:", TokenSha256("x"), " write:"),
           absl::StrCat("token a sha256:", TokenSha256("x"), " read expires=tomorrow"),
           absl::StrCat(Line("a", "x", "read"), "\n", Line("a", "y", "read")),  // name twice
           absl::StrCat(Line("a", "x", "read"), "\n", Line("b", "x", "read")),  // token twice
           std::string("user a b read"),
       }) {
    SCOPED_TRACE(bad);
    auto c = ParseCredentials(bad);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find("credentials line "), std::string::npos);
  }
}

TEST(Credentials, NewTokensAreDistinctAndUrlSafe) {
  auto a = NewToken();
  auto b = NewToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->size(), 4u + 43u);
  EXPECT_EQ(a->find_first_not_of(
                "tdm_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"),
            std::string::npos);
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void Write(const std::string& text) {
    std::ofstream(path_ + ".new") << text;
    std::filesystem::rename(path_ + ".new", path_);
  }
  std::string path_ = absl::StrCat(::testing::TempDir(), "/credentials-", getpid());
};

TEST_F(AuthenticatorTest, TokensCertificatesExpiryAndReload) {
  Write(absl::StrCat(Line("reader", "r", "read"), "\n",
                     Line("old", "old-token-7", "read"), " expires=2020-01-01T00:00:00Z\n",
                     "cert device-7 device-7.fleet write:device-7\n"));
  auto a = Authenticator::FromFile(path_, spdlog::default_logger());
  ASSERT_TRUE(a.ok()) << a.status();
  const absl::Time now = absl::Now();
  EXPECT_EQ((*a)->Authenticate("Bearer r", {}, now)->name, "reader");
  EXPECT_EQ((*a)->Authenticate("bearer  r ", {}, now)->name, "reader");
  for (const auto& [header, certs] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"Bearer nope-token-7", {}},
           {"Bearer old-token-7", {}},           // expired
           {"r", {}},                            // no scheme
           {"Basic r", {}},
           {"", {}},                             // nothing
           {"", {"someone-else"}},               // an unlisted certificate
           {"Bearer nope-token-7", {"device-7.fleet"}},  // not rescued by a certificate
       }) {
    auto p = (*a)->Authenticate(header, certs, now);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_EQ(p.status().message().find("-token-7"), std::string::npos);  // never echoed
  }
  auto device = (*a)->Authenticate("", {"device-7", "device-7.fleet"}, now);
  ASSERT_TRUE(device.ok());
  EXPECT_TRUE(device->MayWriteDevice("device-7"));
  EXPECT_EQ(RequireRead(*device).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(RequireWrite(*device).ok());

  // Revoked by removing the line; a broken file keeps the last good one.
  Write(Line("other", "x", "read"));
  EXPECT_TRUE((*a)->Authenticate("Bearer r", {}, now + absl::Milliseconds(10)).ok());  // checked at most once a second
  EXPECT_FALSE((*a)->Authenticate("Bearer r", {}, now + absl::Seconds(2)).ok());
  EXPECT_TRUE((*a)->Authenticate("Bearer x", {}, now + absl::Seconds(2)).ok());
  Write("token broken\n");
  EXPECT_TRUE((*a)->Authenticate("Bearer x", {}, now + absl::Seconds(4)).ok());
}

TEST(Authenticator, OpenLetsEverythingThrough) {
  auto a = Authenticator::Open();
  auto p = a->Authenticate("", {});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->read && p->explicit_versions && p->MayWriteDevice("x"));
}

TEST(WritePermission, RejectsDevicesOutsideTheFleetAndUnpermittedVersions) {
  google::protobuf::RepeatedPtrField<v1::Event> events;
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  for (const char* device : {"north-1", "south-1", "north-2"}) {
    v1::Event& e = *events.Add();
    e.set_device_id(device);
    e.set_time(now_us);
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    (*e.mutable_measures())["t"].set_double_value(1);
  }
  events[2].set_version(42);
  ingest::PreparedBatch b = ingest::PrepareEvents(
      events, now_us, 0, {}, {.device_prefixes = {"north-"}, .explicit_versions = false});
  ASSERT_EQ(b.accepted.size(), 1u);
  EXPECT_EQ(b.accepted[0].key, "north-1");
  ASSERT_EQ(b.rejected.size(), 2u);
  EXPECT_EQ(b.rejected[0].index(), 1);
  EXPECT_EQ(b.rejected[0].reason(), v1::REJECT_REASON_DEVICE_NOT_PERMITTED);
  EXPECT_EQ(b.rejected[1].index(), 2);
  EXPECT_EQ(b.rejected[1].reason(), v1::REJECT_REASON_VERSION_NOT_PERMITTED);
  // The default permits everything, as an open server does.
  EXPECT_EQ(ingest::PrepareEvents(events, now_us, 0, {}).accepted.size(), 3u);
}

}  // namespace
}  // namespace tidemark::auth
