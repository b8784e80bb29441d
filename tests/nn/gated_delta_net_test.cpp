// GatedDeltaNet: running a sequence in two pieces, carrying S and the short-conv cache in
// LayerMemory, equals one pass over the whole sequence; gradients match central differences.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/gated_delta_net.h"
#include "nn/mixer_checks.h"
#include "testing/numeric.h"

namespace hypnos::nn {

TEST(GatedDeltaNet, SplitSequenceWithCarriedMemoryEqualsWholeSequence) {
  torch::manual_seed(3);
  GatedDeltaNet gdn(small());
  gdn->to(torch::kDouble);
  expect_split_equals_whole(gdn);
}

TEST(GatedDeltaNet, InitialisesDecayAsPaper) {
  torch::manual_seed(4);
  GatedDeltaNet gdn(GatedDeltaNetOptions(64, 64, 1, 1));
  const auto A = gdn->A_log.exp();
  EXPECT_GE(A.min().item<double>(), 1.0);
  EXPECT_LE(A.max().item<double>(), 16.0);
  const auto dt = at::softplus(gdn->dt_bias);
  EXPECT_GE(dt.min().item<double>(), 1e-3 * 0.999);
  EXPECT_LE(dt.max().item<double>(), 0.1 * 1.001);
}

TEST(GatedDeltaNet, GradientsMatchCentralDifferences) {
  torch::manual_seed(5);
  GatedDeltaNet gdn(small());
  gdn->to(torch::kDouble);
  const auto x = torch::randn({1, 5, 16}, torch::kDouble);
  const auto s0 = torch::randn({1, 2, 8, 4}, torch::kDouble);
  auto f = [&](const std::vector<at::Tensor>& in) {
    memory::LayerMemory mem;
    mem.state = in[1];
    const MixerOutput out = gdn->forward(in[0], mem);
    return out.y.pow(2).sum() + out.written.state.sin().sum();
  };
  for (double err : testing::gradient_check_errors(f, {x, s0}, 1e-6, 40)) EXPECT_LT(err, 1e-6);
}

}  // namespace hypnos::nn
