// The head at the loss positions only (docs/design.md 1.1): the loss and every gradient equal those
// of the full logits [B, T, vocab] through masked_cross_entropy, under each schedule, a partial
// loop, sliding eviction and window recompute; padding the positions (a CUDA graph's capacity)
// changes nothing; evaluation scores the same.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/memory/model_memory.h"
#include "hypnos/sleep/window_loop.h"
#include "hypnos/train/loss.h"
#include "hypnos/train/micro_batch_step.h"

namespace hypnos::train {
namespace {

nn::HybridLM make_model(bool tie) {
  torch::manual_seed(11);
  nn::ModelOptions m;
  m.vocab_size = 13;
  m.d_model = 16;
  m.n_heads = 2;
  m.pattern = "AGAG";
  m.tie_embeddings = tie;
  return nn::HybridLM(m);
}

std::vector<at::Tensor> grads_of(nn::HybridLM& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) {
    out.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    p.mutable_grad() = at::Tensor();
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

// Rows of different lengths (right-padded, GSM-Infinite-like): loss positions in several windows,
// windows where only some rows hold them (loss_free's per-row plans) and windows without any.
struct Batch {
  at::Tensor tokens, targets, mask;
};
Batch ragged_batch() {
  torch::manual_seed(5);
  Batch b;
  b.tokens = torch::randint(0, 13, {3, 40});
  b.targets = torch::randint(0, 13, {3, 40});
  b.mask = torch::zeros({3, 40}, torch::kBool);
  b.mask.index_put_({0, torch::indexing::Slice(30, 34)}, true);  // window 3 only
  b.mask.index_put_({1, torch::indexing::Slice(12, 15)}, true);  // windows 1 and 3
  b.mask.index_put_({1, torch::indexing::Slice(36, 38)}, true);
  b.mask.index_put_({2, torch::indexing::Slice(17, 19)}, true);  // window 1 only
  return b;
}

struct Case {
  const char* name;
  sleep::SleepOptions sleep;
  sleep::BackpropOptions backprop;
  bool tie = false;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  sleep::SleepOptions s;
  s.n_passes = 3;
  s.window = 10;
  out.push_back({"evicted", s, {}});
  s.schedule = sleep::Schedule::kLossFree;
  out.push_back({"loss_free", s, {}});
  s.loop_layers = {1, 3};
  s.eviction = memory::Eviction::kSliding;
  out.push_back({"loss_free, partial loop, sliding", s, {}});
  sleep::BackpropOptions recompute;
  recompute.recompute = sleep::Recompute::kWindow;
  recompute.truncate_every = 3;
  out.push_back({"loss_free, partial loop, sliding, window recompute, truncation", s, recompute});
  s = sleep::SleepOptions{};
  s.n_passes = 2;
  s.window = 10;
  out.push_back({"evicted, tied embeddings", s, {}, true});
  return out;
}

TEST(HeadLoss, LossAndGradientsEqualTheFullLogitsLoss) {
  const Batch b = ragged_batch();
  for (const Case& c : cases()) {
    auto model = make_model(c.tie);
    const auto full = sleep::run_windows(model, b.tokens, b.mask, memory::ModelMemory::empty(4),
                                         c.sleep, c.backprop);
    const auto expected = masked_cross_entropy(full.logits, b.targets, b.mask);
    expected.backward();
    const auto expected_grads = grads_of(model);

    const auto out = sleep::run_windows(model, b.tokens, b.mask, memory::ModelMemory::empty(4),
                                        c.sleep, c.backprop, {}, sleep::WakeOutput::kHidden);
    EXPECT_FALSE(out.logits.defined()) << c.name;
    const auto at = loss_positions(b.targets, b.mask);
    EXPECT_EQ(at.count, b.mask.sum().item<int64_t>()) << c.name;
    const auto loss = head_cross_entropy(model, out.hidden, at.index, at.labels);
    loss.backward();
    // fp32: the head's products over P = 11 rows instead of 120 and the loss's gather instead of
    // the masked index are the only differences, each a reordering of a sum of a few terms.
    EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-6 * expected.item<double>())
        << c.name;
    EXPECT_LT(max_relative_difference(grads_of(model), expected_grads), 1e-5) << c.name;
    // The hidden states are what the head reads: the full logits are the head of them.
    EXPECT_LT((model->logits(out.hidden) - full.logits).abs().max().item<double>(), 1e-5) << c.name;
  }
}

TEST(HeadLoss, PaddedPositionsChangeNeitherLossNorGradients) {
  const Batch b = ragged_batch();
  auto model = make_model(false);
  sleep::SleepOptions s;
  s.n_passes = 2;
  s.window = 10;
  auto run = [&](int64_t capacity) {
    const auto out = sleep::run_windows(model, b.tokens, b.mask, memory::ModelMemory::empty(4), s,
                                        {}, {}, sleep::WakeOutput::kHidden);
    const auto at = loss_positions(b.targets, b.mask, capacity);
    if (capacity > 0) EXPECT_EQ(at.index.size(0), capacity);
    const auto loss = head_cross_entropy(model, out.hidden, at.index, at.labels);
    loss.backward();
    return std::make_pair(loss.item<double>(), grads_of(model));
  };
  const auto [exact, exact_grads] = run(0);
  const auto [padded, padded_grads] = run(32);
  EXPECT_NEAR(padded, exact, 1e-6 * exact);
  EXPECT_LT(max_relative_difference(padded_grads, exact_grads), 1e-5);
}

TEST(HeadLoss, BadPositionsAreNamedErrors) {
  const auto targets = torch::zeros({2, 5}, torch::kLong);
  auto mask = torch::zeros({2, 5}, torch::kBool);
  EXPECT_THROW(
      {
        try {
          loss_positions(targets, mask);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("no loss positions"), std::string::npos);
          throw;
        }
      },
      c10::Error);
  mask.fill_(true);
  EXPECT_THROW(
      {
        try {
          loss_positions(targets, mask, 4);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("10 loss positions exceed the capacity 4"),
                    std::string::npos);
          throw;
        }
      },
      c10::Error);
}

}  // namespace
}  // namespace hypnos::train
