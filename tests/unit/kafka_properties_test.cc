#include "common/kafka/client_properties.h"

#include "gtest/gtest.h"

namespace tidemark::kafka {
namespace {

TEST(KafkaProperties, ParsesFlagAndFileForms) {
  auto flag = ParseProperties("security.protocol=ssl, ssl.ca.location=/run/ca.pem", ',', "f");
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->at("security.protocol"), "ssl");
  EXPECT_EQ(flag->at("ssl.ca.location"), "/run/ca.pem");
  auto file = ParseProperties("# comment\nsasl.password = p=w,d \n\nsasl.username=u\n", '\n', "f");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->at("sasl.password"), "p=w,d");  // everything after the first '='
  EXPECT_EQ(file->size(), 2u);
}

TEST(KafkaProperties, ABadEntryNamesItsPlaceNotItsValue) {
  auto bad = ParseProperties("sasl.username=u\nhunter2\n", '\n', "--kafka_config_file");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--kafka_config_file: entry 2"), std::string::npos);
  EXPECT_EQ(bad.status().message().find("hunter2"), std::string::npos);
}

TEST(KafkaProperties, ApplyRefusesAnUnknownPropertyByName) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  absl::Status s = ApplyProperties(conf, {{"sasl.pasword", "hunter2"}}, "producer");
  rd_kafka_conf_destroy(conf);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sasl.pasword"), std::string::npos);
  EXPECT_EQ(s.message().find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace tidemark::kafka
