// Global-norm clipping and the non-finite check on hand-built gradients.
#include "hypnos/train/grad.h"

#include <gtest/gtest.h>

#include <limits>

namespace hypnos::train {
namespace {

std::vector<at::Tensor> params_with_grads(const std::vector<at::Tensor>& grads) {
  std::vector<at::Tensor> params;
  for (const auto& g : grads) {
    at::Tensor p = at::zeros_like(g).requires_grad_();
    p.mutable_grad() = g.clone();
    params.push_back(p);
  }
  return params;
}

std::vector<at::Tensor> random_grads(uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {at::randn({7, 5}, gen), at::randn({13}, gen), at::randn({3, 1, 4}, gen)};
}

double norm_of_concatenation(const std::vector<at::Tensor>& grads) {
  std::vector<at::Tensor> flat;
  for (const auto& g : grads) flat.push_back(g.to(at::kDouble).flatten());
  return at::cat(flat).norm().item<double>();
}

TEST(GradNorm, EqualsTheNormOfAllGradientsConcatenated) {
  const auto grads = random_grads(1);
  auto params = params_with_grads(grads);
  params.push_back(at::zeros({4}).requires_grad_());  // no grad: ignored
  const double want = norm_of_concatenation(grads);
  EXPECT_NEAR(grad_norm(params), want, 1e-12 * want);
}

TEST(GradNorm, LargeFiniteGradientsDoNotOverflow) {
  // float32 squares of 1e30 overflow; the float64 accumulation keeps the norm finite.
  const auto params = params_with_grads({at::full({4}, 1e30f)});
  const double want = 2.0 * static_cast<double>(1e30f);  // sqrt(4 * x^2), x as float32 holds it
  EXPECT_NEAR(grad_norm(params), want, 1e-12 * want);
  EXPECT_TRUE(grads_are_finite(params));
}

TEST(ClipGradNorm, ScalesToMaxNormAndReturnsTheNormBeforeClipping) {
  const auto grads = random_grads(2);
  const auto params = params_with_grads(grads);
  const double before = norm_of_concatenation(grads);
  ASSERT_GT(before, 1.0);
  EXPECT_NEAR(clip_grad_norm(params, 1.0), before, 1e-12 * before);
  EXPECT_NEAR(grad_norm(params), 1.0, 1e-5);
  // Direction kept: every gradient scaled by the same factor.
  for (size_t i = 0; i < grads.size(); ++i) {
    const at::Tensor scaled = grads[i] * (1.0 / (before + 1e-6));
    EXPECT_LT((params[i].grad() - scaled).norm().item<double>(),
              1e-6 * scaled.norm().item<double>());
  }
}

TEST(ClipGradNorm, LeavesGradientsUnderTheLimitBitwiseUntouched) {
  const auto grads = random_grads(3);
  const auto params = params_with_grads(grads);
  const double norm = clip_grad_norm(params, 1e6);
  EXPECT_GT(norm, 0.0);
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_TRUE(at::equal(params[i].grad(), grads[i]));
}

TEST(ClipGradNorm, ZeroMaxNormDisablesClippingButStillMeasures) {
  const auto grads = random_grads(4);
  const auto params = params_with_grads(grads);
  EXPECT_NEAR(clip_grad_norm(params, 0.0), norm_of_concatenation(grads), 1e-9);
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_TRUE(at::equal(params[i].grad(), grads[i]));
}

TEST(ClipGradNorm, NonFiniteNormLeavesGradientsUntouched) {
  auto grads = random_grads(5);
  grads[1][3] = std::numeric_limits<float>::quiet_NaN();
  const auto params = params_with_grads(grads);
  EXPECT_TRUE(std::isnan(clip_grad_norm(params, 1.0)));
  EXPECT_TRUE(at::equal(params[0].grad(), grads[0]));
  EXPECT_TRUE(at::equal(params[2].grad(), grads[2]));
}

TEST(GradsAreFinite, DetectsNanAndInfAnywhere) {
  EXPECT_TRUE(grads_are_finite(params_with_grads(random_grads(6))));
  auto with_inf = random_grads(6);
  with_inf[2][2][0][1] = -std::numeric_limits<float>::infinity();
  EXPECT_FALSE(grads_are_finite(params_with_grads(with_inf)));
  auto with_nan = random_grads(6);
  with_nan[0][6][4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(grads_are_finite(params_with_grads(with_nan)));
  EXPECT_TRUE(grads_are_finite({}));
}

}  // namespace
}  // namespace hypnos::train
