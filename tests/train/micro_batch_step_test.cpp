// MicroBatchStep: the eager path is the window loop with the head at the loss positions, to the
// bit; on a GPU, replayed CUDA graphs give the eager losses and gradients, accumulate across
// micro-batches, and capture again exactly when the layout or the gradient tensors change.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/tasks/batch.h"
#include "hypnos/tasks/task.h"
#include "hypnos/tasks/task_options.h"
#include "hypnos/train/loss.h"
#include "hypnos/train/micro_batch_step.h"
#include "hypnos/train/optimizer.h"
#include "testing/cuda.h"

namespace hypnos::train {
namespace {

nn::ModelOptions small_model() {
  nn::ModelOptions m;
  m.vocab_size = 6;
  m.d_model = 128;  // 2 heads of 64: a head size the CUDA kernels take
  m.n_heads = 2;
  m.pattern = "AGAG";
  return m;
}

nn::HybridLM make_model(const at::Device& device) {
  torch::manual_seed(7);
  nn::HybridLM model(small_model());
  model->to(device);
  return model;
}

std::unique_ptr<tasks::Task> rule110() {
  tasks::TaskOptions options;  // rule110, t = 12: four evicted 24-cell windows, then the queries
  return tasks::make_task(options, 0);
}

sleep::SleepOptions two_passes() {
  sleep::SleepOptions s;
  s.n_passes = 2;
  s.window = 24;
  return s;
}

std::vector<at::Tensor> grads_of(nn::HybridLM& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) {
    out.push_back(p.grad().defined() ? p.grad().detach().clone() : at::zeros_like(p));
  }
  return out;
}

double max_relative_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(b[i].abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

TEST(MicroBatchStep, EagerPathIsTheWindowLoopLossAndBackwardBitwise) {
  const auto task = rule110();
  const auto batch = tasks::make_batch(*task, tasks::Split::kTrain, 0, 4);
  auto expected_model = make_model(at::kCPU);
  at::Tensor expected_loss;
  {
    const auto out = sleep::run_windows(expected_model, batch.tokens, batch.loss_mask,
                                        memory::ModelMemory::empty(4), two_passes(), {}, {},
                                        sleep::WakeOutput::kHidden);
    const auto at = loss_positions(batch.targets, batch.loss_mask);
    expected_loss = head_cross_entropy(expected_model, out.hidden, at.index, at.labels) * 0.5;
    expected_loss.backward();
  }
  auto model = make_model(at::kCPU);
  MicroBatchStepOptions options;
  options.sleep = two_passes();
  options.loss_scale = 0.5;
  MicroBatchStep step(model, options, at::kCPU);
  const auto loss = step.run(batch);
  EXPECT_FALSE(step.last_run_graphed());
  EXPECT_EQ(loss.item<double>(), expected_loss.item<double>());
  EXPECT_EQ(max_relative_difference(grads_of(model), grads_of(expected_model)), 0.0);
  EXPECT_TRUE(std::isnan(step.run(batch, /*poison=*/true).item<double>()));
}

TEST(WindowLoop, GivenPlansMustCoverEveryWindow) {
  auto model = make_model(at::kCPU);
  const auto tokens = torch::zeros({2, 30}, torch::kLong);
  const auto mask = torch::ones({2, 30}, torch::kBool);
  const auto plans = sleep::plan_windows(mask, 30, two_passes());
  try {
    sleep::run_windows(model, tokens, mask, memory::ModelMemory::empty(4), two_passes(), {},
                       std::vector<sleep::WindowPlan>(plans.begin(), plans.end() - 1));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(
        std::string(e.what()).find(std::to_string(plans.size() - 1) + " window plans given for " +
                                   std::to_string(plans.size()) + " windows"),
        std::string::npos)
        << e.what();
  }
}

// One model twice on the GPU: `eager` steps without graphs, `graphed` through capture and replay.
struct EagerAndGraphed {
  const at::Device cuda{at::kCUDA, 0};
  nn::HybridLM eager_model = make_model(cuda), graph_model = make_model(cuda);
  std::unique_ptr<MicroBatchStep> eager, graphed;

  explicit EagerAndGraphed(MicroBatchStepOptions options) {
    options.cuda_graph = false;
    eager = std::make_unique<MicroBatchStep>(eager_model, options, cuda);
    options.cuda_graph = true;
    graphed = std::make_unique<MicroBatchStep>(graph_model, options, cuda);
  }
  // `count` micro-batches of `size` (one layout) through both: the losses agree to `tolerance`
  // (relative) and every one of them was a replay.
  void run_both(const tasks::Task& task, int count, int64_t size, double tolerance) {
    for (int micro = 0; micro < count; ++micro) {
      const auto batch = tasks::make_batch(task, tasks::Split::kTrain, size * micro, size);
      const double a = eager->run(batch).item<double>();
      const double b = graphed->run(batch).item<double>();
      EXPECT_TRUE(graphed->last_run_graphed()) << "micro-batch " << micro;
      EXPECT_NEAR(a, b, tolerance * std::abs(a)) << "micro-batch " << micro;
    }
  }
  double grad_difference() {
    return max_relative_difference(grads_of(graph_model), grads_of(eager_model));
  }
};

TEST(MicroBatchStepCuda, ReplayedGraphsMatchEagerStepsAndAccumulate) {
  HYPNOS_REQUIRE_CUDA();
  const auto task = rule110();
  MicroBatchStepOptions options;
  options.sleep = two_passes();
  options.bf16_autocast = false;  // fp32 on both sides: only the loss reduction order differs
  options.loss_scale = 1.0 / 3.0;
  EagerAndGraphed pair(options);
  pair.run_both(*task, /*count=*/3, /*size=*/16, 1e-5);  // three micro-batches of one step
  EXPECT_EQ(pair.graphed->captures(), 1);
  EXPECT_LT(pair.grad_difference(), 1e-4);

  // Zeroing in place keeps the graph; setting gradients to none makes the next call capture again.
  MicroBatchStep& graphed = *pair.graphed;
  Optimizer optimizer(split_parameters(*pair.graph_model), OptimizerOptions{});
  optimizer.zero_grad(/*set_to_none=*/false);
  const auto batch = tasks::make_batch(*task, tasks::Split::kTrain, 100, 16);
  graphed.run(batch);
  EXPECT_EQ(graphed.captures(), 1);
  optimizer.zero_grad(/*set_to_none=*/true);
  graphed.run(batch);
  EXPECT_EQ(graphed.captures(), 2);
  EXPECT_TRUE(graphed.last_run_graphed());
  // A micro-batch with another shape is another layout.
  graphed.run(tasks::make_batch(*task, tasks::Split::kTrain, 100, 8));
  EXPECT_EQ(graphed.captures(), 3);
  // After three captures the step gives up on graphs rather than capture every batch.
  graphed.run(batch);
  EXPECT_EQ(graphed.captures(), 3);
  EXPECT_FALSE(graphed.last_run_graphed());
}

// Activation recompute (a custom autograd Function replaying each window inside backward) and
// truncated backprop go into the graph too.
TEST(MicroBatchStepCuda, GraphedRecomputeAndTruncationMatchEager) {
  HYPNOS_REQUIRE_CUDA();
  const auto task = rule110();
  MicroBatchStepOptions options;
  options.sleep = two_passes();
  options.bf16_autocast = false;
  options.backprop.recompute = sleep::Recompute::kWindow;
  options.backprop.truncate_every = 2;
  EagerAndGraphed pair(options);
  pair.run_both(*task, /*count=*/2, /*size=*/32, 1e-5);
  EXPECT_EQ(pair.graphed->captures(), 1);
  EXPECT_LT(pair.grad_difference(), 1e-4);
}

TEST(MicroBatchStepCuda, Bf16GraphedStepMatchesEagerUnderAutocast) {
  HYPNOS_REQUIRE_CUDA();
  const auto task = rule110();
  MicroBatchStepOptions options;
  options.sleep = two_passes();
  EagerAndGraphed pair(options);
  pair.run_both(*task, /*count=*/1, /*size=*/64, 1e-3);
  EXPECT_LT(pair.grad_difference(), 2e-2);
}

}  // namespace
}  // namespace hypnos::train
