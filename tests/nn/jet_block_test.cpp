// JetBlock: running a sequence in two pieces equals one pass; gradients (input, state and the
// dynamic-convolution generator) match central differences; it starts as a static convolution
// whose generator still learns.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/jet_block.h"
#include "nn/mixer_checks.h"
#include "testing/numeric.h"

namespace hypnos::nn {

TEST(JetBlock, SplitSequenceWithCarriedMemoryEqualsWholeSequence) {
  torch::manual_seed(6);
  JetBlock jet(small());
  jet->to(torch::kDouble);
  {  // move the generator off its zero init so the dynamic kernel depends on x
    torch::NoGradGuard g;
    jet->kernel_down->weight.normal_(0, 0.3);
    jet->kernel_up->weight.normal_(0, 0.3);
  }
  expect_split_equals_whole(jet);
}

// In the input, the initial state and the generator weights (the dynamic kernel's path), with a
// generator moved off its init so that the kernel depends on x.
TEST(JetBlock, GradientsMatchCentralDifferences) {
  torch::manual_seed(8);
  JetBlock jet(small());
  jet->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    jet->kernel_up->weight.normal_(0, 0.3);
  }
  const auto x = torch::randn({1, 5, 16}, torch::kDouble);
  const auto s0 = torch::randn({1, 2, 8, 4}, torch::kDouble);
  auto loss = [&](const at::Tensor& input, const at::Tensor& state) {
    memory::LayerMemory mem;
    mem.state = state;
    const MixerOutput out = jet->forward(input, mem);
    return out.y.pow(2).sum() + out.written.state.sin().sum();
  };
  auto f = [&](const std::vector<at::Tensor>& in) { return loss(in[0], in[1]); };
  for (double err : testing::gradient_check_errors(f, {x, s0}, 1e-6, 40)) EXPECT_LT(err, 1e-6);
  // The generator weights: autograd's gradient against central differences of a few coordinates.
  for (at::Tensor w : {jet->kernel_down->weight, jet->kernel_up->weight}) {
    jet->zero_grad();
    loss(x, s0).backward();
    const at::Tensor analytic = w.grad().clone().view(-1);
    torch::NoGradGuard g;
    const at::Tensor flat = w.view(-1);
    for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / 12)) {
      const double h = 1e-6, v = flat[i].item<double>();
      flat[i] = v + h;
      const double up = loss(x, s0).item<double>();
      flat[i] = v - h;
      const double down = loss(x, s0).item<double>();
      flat[i] = v;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(analytic[i].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << "coordinate " << i;
    }
  }
}

TEST(JetBlock, StartsAsAStaticConvolutionThatCanLearn) {
  torch::manual_seed(7);
  JetBlock jet(small());
  jet->to(torch::kDouble);
  // kernel_up's weight starts at zero, so every token gets the bias kernel: two inputs give
  // kernels that agree (the layer is a static convolution on v).
  const auto k1 =
      jet->kernel_up(at::silu(jet->kernel_down(torch::randn({1, 3, 16}, torch::kDouble))));
  const auto k2 =
      jet->kernel_up(at::silu(jet->kernel_down(torch::randn({1, 3, 16}, torch::kDouble))));
  EXPECT_TRUE(k1.equal(k2));
  EXPECT_LE(jet->kernel_up->bias.abs().max().item<double>(), 0.5);
  // But the generator is not stuck there: kernel_down is initialised, so both generator weights
  // get a gradient from the first backward (zeroing both would leave both gradients zero).
  EXPECT_GT(jet->kernel_down->weight.abs().max().item<double>(), 0.0);
  const auto x = torch::randn({2, 5, 16}, torch::kDouble);
  jet->forward(x, memory::LayerMemory{}).y.pow(2).sum().backward();
  EXPECT_GT(jet->kernel_up->weight.grad().abs().max().item<double>(), 0.0);
  EXPECT_GT(jet->kernel_up->bias.grad().abs().max().item<double>(), 0.0);
}

}  // namespace hypnos::nn
