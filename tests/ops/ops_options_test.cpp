// OpsOptions as config keys (model.gdn_backend, model.gdn_kernel, model.gdn_scan_slice,
// model.fused_ops): they parse, reject unknown values naming the key and the allowed values, and
// write back; nothing reads them from the environment.
#include "hypnos/ops/ops_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hypnos/config/error.h"
#include "hypnos/config/visitors.h"
#include "hypnos/nn/model_options.h"

namespace hypnos::ops {
namespace {

/// The model section alone, as in a run config.
struct ModelSection {
  nn::ModelOptions model;
  template <class V>
  void visit(V& v) {
    v.section("model", model);
  }
};

OpsOptions load(const std::vector<std::string>& overrides) {
  return config::load<ModelSection>("", overrides).model.ops;
}

std::string error_of(const std::vector<std::string>& overrides) {
  try {
    load(overrides);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(OpsOptions, DefaultsAreAutoTensorCoresAutoSliceFused) {
  const OpsOptions o = load({});
  EXPECT_EQ(o.gdn_backend, GdnBackend::kAuto);
  EXPECT_EQ(o.gdn_kernel, GdnKernel::kTensorCore);
  EXPECT_EQ(o.gdn_scan_slice, GdnScanSlice::kAuto);
  EXPECT_TRUE(o.fused_ops);
}

TEST(OpsOptions, KeysParseUnderTheModelSection) {
  const OpsOptions o = load({"model.gdn_backend=chunked", "model.gdn_kernel=fp32",
                             "model.gdn_scan_slice=128", "model.fused_ops=false"});
  EXPECT_EQ(o.gdn_backend, GdnBackend::kChunked);
  EXPECT_EQ(o.gdn_kernel, GdnKernel::kFp32);
  EXPECT_EQ(o.gdn_scan_slice, GdnScanSlice::k128);
  EXPECT_FALSE(o.fused_ops);
  EXPECT_EQ(load({"model.gdn_scan_slice=32"}).gdn_scan_slice, GdnScanSlice::k32);
  EXPECT_EQ(load({"model.gdn_scan_slice=64"}).gdn_scan_slice, GdnScanSlice::k64);
  EXPECT_EQ(load({"model.gdn_forward_output=separate"}).gdn_forward_output,
            GdnForwardOutput::kSeparate);
  EXPECT_EQ(load({"model.gdn_forward_output=scan"}).gdn_forward_output, GdnForwardOutput::kScan);
  EXPECT_EQ(load({"model.gdn_kernel=tc"}).gdn_kernel, GdnKernel::kTensorCore);
}

TEST(OpsOptions, UnknownValuesAreRefusedNamingTheKeyAndTheAllowedValues) {
  std::string m = error_of({"model.gdn_kernel=wgmma"});
  EXPECT_NE(m.find("model.gdn_kernel"), std::string::npos) << m;
  EXPECT_NE(m.find("tc | fp32"), std::string::npos) << m;
  EXPECT_NE(m.find("'wgmma'"), std::string::npos) << m;
  m = error_of({"model.gdn_scan_slice=48"});
  EXPECT_NE(m.find("model.gdn_scan_slice"), std::string::npos) << m;
  EXPECT_NE(m.find("auto | 32 | 64 | 128"), std::string::npos) << m;
  m = error_of({"model.gdn_backend=fast"});
  EXPECT_NE(m.find("model.gdn_backend"), std::string::npos) << m;
  EXPECT_NE(m.find("auto | reference | chunked | cuda"), std::string::npos) << m;
  m = error_of({"model.fused_ops=sometimes"});
  EXPECT_NE(m.find("model.fused_ops"), std::string::npos) << m;
  m = error_of({"model.gdn_kernels=fp32"});
  EXPECT_NE(m.find("did you mean model.gdn_kernel"), std::string::npos) << m;
}

TEST(OpsOptions, WrittenConfigReadsBackToTheSameChoices) {
  ModelSection s;
  s.model.vocab_size = 8;
  s.model.ops.gdn_kernel = GdnKernel::kFp32;
  s.model.ops.gdn_scan_slice = GdnScanSlice::k64;
  s.model.ops.fused_ops = false;
  const std::string yaml = config::to_yaml(s);
  EXPECT_NE(yaml.find("  gdn_scan_slice: 64\n"), std::string::npos) << yaml;
  auto doc = config::Document::from_string(yaml, "<written>");
  ModelSection back;
  config::Reader reader(doc);
  back.visit(reader);
  EXPECT_EQ(back.model.ops.gdn_kernel, GdnKernel::kFp32);
  EXPECT_EQ(back.model.ops.gdn_scan_slice, GdnScanSlice::k64);
  EXPECT_FALSE(back.model.ops.fused_ops);
}

}  // namespace hypnos::ops
