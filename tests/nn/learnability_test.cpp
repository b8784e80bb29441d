// Every parameter of a freshly initialised model can learn: training steps through the window loop
// (sleep on, N = 2) give every parameter of every block kind (A, G, J) a non-zero gradient, and a
// few optimizer steps move the JetBlock's kernel generator off its init. A parameter whose gradient
// stays identically zero (as a generator with both weights zeroed) fails here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/memory/model_memory.h"
#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/train/optimizer.h"

namespace hypnos::nn {
namespace {

/// The model as a training run builds it: default initialisation, fp32, the chunked backend.
HybridLM fresh_model(const std::string& pattern, uint64_t seed) {
  torch::manual_seed(seed);
  ModelOptions o;
  o.vocab_size = 8;
  o.d_model = 32;
  o.n_heads = 2;
  o.pattern = pattern;
  o.ops.gdn_backend = ops::GdnBackend::kChunked;
  return HybridLM(o);
}

/// One step's loss: cross entropy over every position, windows of 4, two passes.
at::Tensor step_loss(HybridLM& m, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto tokens = at::randint(0, 8, {4, 12}, gen, at::TensorOptions().dtype(at::kLong));
  const auto targets = at::randint(0, 8, {4, 12}, gen, at::TensorOptions().dtype(at::kLong));
  sleep::SleepOptions o;
  o.n_passes = 2;
  o.window = 4;
  const auto out =
      sleep::run_windows(m, tokens, at::Tensor(), memory::ModelMemory::empty(m->n_layers()), o);
  return at::cross_entropy_loss(out.logits.reshape({-1, 8}), targets.reshape({-1}));
}

}  // namespace

// The first backward reaches every parameter but the JetBlock generator's down projection: its
// gradient passes through the up projection, which starts at zero so that the layer starts as a
// static convolution (as a LoRA pair starts). The up projection's gradient is non-zero, so after
// one optimizer step the second backward reaches every parameter. With both generator weights
// zeroed (silu(0) = 0) the up projection's gradient would be zero too, and the generator stuck for
// good.
TEST(Learnability, EveryParameterOfEveryBlockKindLearnsFromTheFirstSteps) {
  HybridLM m = fresh_model("AGJ", 0);
  const std::string down = "blocks.2.mixer.kernel_down.weight";
  const auto params = m->named_parameters();
  for (const char* name :
       {"blocks.0.mixer.q_proj.weight", "blocks.1.mixer.q_conv.weight",
        "blocks.2.mixer.kernel_down.weight", "blocks.2.mixer.kernel_up.weight"}) {
    ASSERT_NE(params.find(name), nullptr) << name;  // all three block kinds and the generator
  }
  train::Optimizer optimizer(train::split_parameters(*m), train::OptimizerOptions{});
  for (int step = 1; step <= 2; ++step) {
    optimizer.zero_grad();
    step_loss(m, static_cast<uint64_t>(step)).backward();
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key() << " gets no gradient, step " << step;
      const double g = p.value().grad().abs().max().item<double>();
      if (step == 1 && p.key() == down) {
        EXPECT_EQ(g, 0.0) << p.key() << " (behind the zero up projection)";
      } else {
        EXPECT_GT(g, 0.0) << p.key() << "'s gradient is zero at step " << step;
      }
    }
    optimizer.clip_gradients();
    optimizer.step();
  }
}

TEST(Learnability, JetBlockGeneratorWeightsMoveUnderTheOptimizer) {
  HybridLM m = fresh_model("AJ", 2);
  const auto params = m->named_parameters();
  const at::Tensor down = params["blocks.1.mixer.kernel_down.weight"];
  const at::Tensor up = params["blocks.1.mixer.kernel_up.weight"];
  const at::Tensor down0 = down.detach().clone(), up0 = up.detach().clone();
  EXPECT_EQ(up0.abs().max().item<double>(), 0.0);  // it starts as a static convolution
  train::Optimizer optimizer(train::split_parameters(*m), train::OptimizerOptions{});
  for (uint64_t step = 0; step < 3; ++step) {
    optimizer.zero_grad();
    step_loss(m, 10 + step).backward();
    optimizer.clip_gradients();
    optimizer.step();
  }
  EXPECT_GT((down.detach() - down0).abs().max().item<double>(), 0.0);
  EXPECT_GT((up.detach() - up0).abs().max().item<double>(), 0.0);
  // And the generated kernel now depends on the token: the layer is no longer static.
  torch::NoGradGuard no_grad;
  JetBlock& jet = m->block(1).jet;
  const auto x = torch::randn({2, 3, 32});
  const auto kernel = jet->kernel_up(at::silu(jet->kernel_down(x)));
  EXPECT_GT((kernel[0] - kernel[1]).abs().max().item<double>(), 0.0);
}

}  // namespace hypnos::nn
