// Backend names round-trip and bad names are refused with the offending value in the message.
#include <gtest/gtest.h>

#include "hypnos/ops/gated_delta_rule.h"

namespace hypnos::ops {

TEST(GdnBackend, NamesRoundTrip) {
  for (auto b : {GdnBackend::kAuto, GdnBackend::kReference, GdnBackend::kChunked, GdnBackend::kCuda}) {
    EXPECT_EQ(gdn_backend_from_name(gdn_backend_name(b)), b);
  }
}

TEST(GdnBackend, UnknownNameNamesTheValue) {
  try {
    gdn_backend_from_name("fast");
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'fast'"), std::string::npos);
  }
}

}  // namespace hypnos::ops
