// The shared numeric test helpers measure what they claim, and the gradient checker catches a wrong
// gradient (otherwise every gradient test built on it could pass vacuously).
#include "testing/numeric.h"

#include <gtest/gtest.h>

namespace hypnos::testing {
namespace {

TEST(NumericHelpers, RelativeErrorIsTheRatioOfNorms) {
  const at::Tensor ref = at::tensor({3.0, 4.0}, at::kDouble);
  EXPECT_DOUBLE_EQ(relative_error(at::tensor({3.0, 4.5}, at::kDouble), ref), 0.1);
  EXPECT_DOUBLE_EQ(relative_error(ref.to(at::kFloat), ref), 0.0);
  // A zero reference falls back to the absolute norm.
  EXPECT_DOUBLE_EQ(relative_error(at::tensor({0.0, 2.0}, at::kDouble), at::zeros({2}, at::kDouble)),
                   2.0);
}

TEST(NumericHelpers, CentralDifferencesOfASquareAreTwiceTheInput) {
  const at::Tensor x = at::linspace(-1.0, 2.0, 7, at::kDouble);
  const ScalarFunction f = [](const std::vector<at::Tensor>& in) { return (in[0] * in[0]).sum(); };
  const at::Tensor grad = central_difference_gradient(f, {x}, 0, /*h=*/1e-5);
  EXPECT_LT(relative_error(grad, 2.0 * x), 1e-9);
  EXPECT_TRUE(at::equal(x, at::linspace(-1.0, 2.0, 7, at::kDouble)));  // input untouched
  const at::Tensor sampled = central_difference_gradient(f, {x}, 0, 1e-5, /*max_coords=*/3);
  EXPECT_EQ(sampled.isnan().logical_not().sum().item<int64_t>(), 3);
}

TEST(NumericHelpers, GradientCheckFlagsAWrongGradient) {
  const at::Tensor x = at::linspace(0.5, 1.5, 5, at::kDouble);
  const at::Tensor y = at::linspace(-1.0, 1.0, 5, at::kDouble);
  const ScalarFunction right = [](const std::vector<at::Tensor>& in) {
    return (in[0] * in[0] * in[1]).sum();
  };
  // Same value, but autograd sees only half of d/dx (one factor detached).
  const ScalarFunction wrong = [](const std::vector<at::Tensor>& in) {
    return (in[0].detach() * in[0] * in[1]).sum();
  };
  const std::vector<double> ok = gradient_check_errors(right, {x, y});
  EXPECT_LT(ok[0], 1e-8);
  EXPECT_LT(ok[1], 1e-8);
  const std::vector<double> bad = gradient_check_errors(wrong, {x, y});
  EXPECT_GT(bad[0], 0.4);
  EXPECT_LT(bad[1], 1e-8);
}

}  // namespace
}  // namespace hypnos::testing
