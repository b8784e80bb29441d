// RMSNorm: the fused ATen op it calls equals the reference formula x * rsqrt(mean(x^2) + eps) * w,
// its gradients equal central differences in double, and a bf16 input is normalised in fp32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/rms_norm.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

at::Tensor formula(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

}  // namespace

TEST(RMSNorm, EqualsTheReferenceFormulaAndItsFiniteDifferences) {
  torch::manual_seed(0);
  RMSNorm norm(RMSNormOptions(7).eps(1e-5));
  norm->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({7}, torch::kDouble));
  }
  const auto x = torch::randn({3, 5, 7}, torch::kDouble) * 3.0;
  EXPECT_LT(testing::relative_error(norm(x), formula(x, norm->weight, 1e-5)), 1e-14);
  const auto errors = testing::gradient_check_errors(
      [&](const std::vector<at::Tensor>& in) {
        return (at::rms_norm(in[0], {7}, in[1], 1e-5) * at::arange(7, in[0].options())).sum();
      },
      {x, norm->weight.detach()});
  for (size_t i = 0; i < errors.size(); ++i) EXPECT_LT(errors[i], 1e-8) << "input " << i;
}

TEST(RMSNorm, NormalisesABf16InputInTheWeightsFloat32) {
  torch::manual_seed(1);
  RMSNorm norm(RMSNormOptions(16));
  const auto x = torch::randn({4, 16}).to(torch::kBFloat16);
  const auto y = norm(x);
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  EXPECT_LT(testing::relative_error(y, formula(x.to(torch::kFloat), norm->weight, 1e-6)), 1e-6);
}

}  // namespace hypnos::nn
