// sleep.schedule = loss_free is decided per example: a row sleeps on a window where it holds no
// loss token and runs one pass where it holds one, whatever its batch mates hold there. Examples of
// different lengths, right-padded, with sliding eviction (the GSM-Infinite setting) give each row
// the result it gets alone, in any batch and any order, and the result of the algorithm written
// out row by row (sleep/algorithm_port.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/sleep/window_loop.h"
#include "nn/tiny_model.h"
#include "sleep/algorithm_port.h"
#include "testing/numeric.h"

namespace hypnos::sleep {
namespace {

using memory::ModelMemory;
using testing::relative_error;

constexpr int64_t kWindow = 6, kSeqLen = 24;

/// Three examples of 24, 17 and 11 tokens right-padded to 24 (pad id 0), each scored on its last
/// two tokens: row 0's answer lies in window 3, row 1's in windows 2, row 2's in window 1, so every
/// window from 1 on holds loss tokens for some rows and none for others.
struct PaddedBatch {
  at::Tensor tokens, mask;
};

PaddedBatch padded_batch() {
  const std::vector<int64_t> lengths{24, 17, 11};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  PaddedBatch b;
  b.tokens = at::randint(1, 8, {3, kSeqLen}, gen, at::TensorOptions().dtype(at::kLong));
  b.mask = at::zeros({3, kSeqLen}, at::TensorOptions().dtype(at::kBool));
  for (int64_t row = 0; row < 3; ++row) {
    b.tokens[row].narrow(0, lengths[row], kSeqLen - lengths[row]).fill_(0);
    b.mask[row].narrow(0, lengths[row] - 2, 2).fill_(true);
  }
  return b;
}

SleepOptions loss_free(int64_t n_passes) {
  SleepOptions o;
  o.n_passes = n_passes;
  o.window = kWindow;
  o.schedule = Schedule::kLossFree;
  o.eviction = memory::Eviction::kSliding;
  return o;
}

WindowLoopOutput run(nn::HybridLM& m, const at::Tensor& tokens, const at::Tensor& mask,
                     const SleepOptions& o, Recompute recompute = Recompute::kNone) {
  BackpropOptions bp;
  bp.recompute = recompute;
  return run_windows(m, tokens, mask, ModelMemory::empty(m->n_layers()), o, bp);
}

/// Row `row` of a memory, or `b`'s rows `rows` of it, compared slot by slot.
double memory_error(const ModelMemory& a, int64_t row_a, const ModelMemory& b, int64_t row_b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const auto& x = a.layers[i];
    const auto& y = b.layers[i];
    for (auto [s, t] :
         {std::pair{x.key, y.key}, {x.value, y.value}, {x.state, y.state}, {x.conv, y.conv}}) {
      if (s.defined() != t.defined()) return 1.0;
      if (s.defined()) {
        worst = std::max(worst, relative_error(s.narrow(0, row_a, 1), t.narrow(0, row_b, 1)));
      }
    }
  }
  return worst;
}

}  // namespace

TEST(LossFree, PlansSleepPerRowWhereRowsDisagree) {
  const PaddedBatch b = padded_batch();
  const auto plans = plan_windows(b.mask, kSeqLen, loss_free(3));
  ASSERT_EQ(plans.size(), 4u);
  EXPECT_EQ(plans[0], (WindowPlan{.sleeps = true, .wants_logits = false, .per_row = false}));
  for (size_t w = 1; w < 4; ++w) {
    EXPECT_EQ(plans[w], (WindowPlan{.sleeps = true, .wants_logits = true, .per_row = true})) << w;
  }
  // Every row with loss tokens in a window: one pass for all, no per-row decision.
  const auto all = at::ones({2, 12}, at::TensorOptions().dtype(at::kBool));
  for (const auto& p : plan_windows(all, 12, loss_free(3))) {
    EXPECT_EQ(p, (WindowPlan{.sleeps = false, .wants_logits = true, .per_row = false}));
  }
  // N = 1 never sleeps; the evicted schedule sleeps every window but the last, for every row.
  for (const auto& p : plan_windows(b.mask, kSeqLen, loss_free(1))) EXPECT_FALSE(p.sleeps);
  SleepOptions evicted = loss_free(3);
  evicted.schedule = Schedule::kEvicted;
  const auto e = plan_windows(b.mask, kSeqLen, evicted);
  for (size_t w = 0; w < 4; ++w) {
    EXPECT_EQ(e[w].sleeps, w < 3) << w;
    EXPECT_FALSE(e[w].per_row) << w;
  }
}

TEST(LossFree, AnExampleGetsTheSameResultAloneAndInAnyBatch) {
  torch::NoGradGuard no_grad;
  nn::HybridLM m = testing::tiny_model("AGJG", 30, 8);
  const PaddedBatch b = padded_batch();
  for (int64_t n : {2, 3}) {
    for (bool partial : {false, true}) {
      SleepOptions o = loss_free(n);
      if (partial) o.loop_layers = {1, 3};
      const auto batch = run(m, b.tokens, b.mask, o);
      const auto order = at::tensor(std::vector<int64_t>{2, 0, 1});
      const auto permuted =
          run(m, b.tokens.index_select(0, order), b.mask.index_select(0, order), o);
      testing::PortOptions p;
      p.window = kWindow;
      p.passes = n;
      p.sliding = true;
      p.sleeps = testing::loss_free_windows(b.mask, kWindow);
      if (partial) p.loop_begin = 1, p.loop_end = 3;
      const auto port = testing::port_sleep_loop(m, b.tokens, p);
      for (int64_t row = 0; row < 3; ++row) {
        const std::string where = "N = " + std::to_string(n) + ", partial " +
                                  std::to_string(partial) + ", row " + std::to_string(row);
        const auto alone = run(m, b.tokens.narrow(0, row, 1), b.mask.narrow(0, row, 1), o);
        EXPECT_LT(relative_error(batch.logits.narrow(0, row, 1), alone.logits), 1e-12) << where;
        EXPECT_LT(memory_error(batch.memory, row, alone.memory, 0), 1e-12) << where;
        const int64_t at_permuted = row == 2 ? 0 : row + 1;
        EXPECT_LT(relative_error(permuted.logits.narrow(0, at_permuted, 1), alone.logits), 1e-12)
            << where;
        // And the row's result is the algorithm's: its scored logits and its final S.
        const auto scored = b.mask[row];
        EXPECT_LT(
            relative_error(batch.logits[row].index({scored}), port.logits[row].index({scored})),
            1e-12)
            << where;
        for (int64_t i : {1, 2, 3}) {
          EXPECT_LT(relative_error(batch.memory.layers[i].state.narrow(0, row, 1),
                                   port.memory[row][i].state),
                    1e-12)
              << where << ", layer " << i;
        }
      }
    }
  }
}

// The gradient of a batch's summed loss is the sum of each example's alone: the per-row choice
// between the one-pass and the slept memory routes each row's gradient to its own computation.
// Window recompute replays the same per-row choice.
TEST(LossFree, BatchGradientsAreTheSumOfEachExamplesAlone) {
  nn::HybridLM m = testing::tiny_model("AGJG", 31, 8);
  const PaddedBatch b = padded_batch();
  const auto targets = at::randint(0, 8, {3, kSeqLen}, at::TensorOptions().dtype(at::kLong));
  const SleepOptions o = loss_free(2);
  auto loss_of = [&](const WindowLoopOutput& out, const at::Tensor& t, const at::Tensor& mask) {
    const auto lp = at::log_softmax(out.logits, -1).gather(-1, t.unsqueeze(-1)).squeeze(-1);
    return -(lp * mask.to(lp.scalar_type())).sum();
  };
  auto grads = [&](const at::Tensor& loss) {
    auto g = torch::autograd::grad({loss}, m->parameters(), {}, false, false, true);
    for (size_t i = 0; i < g.size(); ++i) {
      if (!g[i].defined()) g[i] = at::zeros_like(m->parameters()[i]);
    }
    return g;
  };
  std::vector<at::Tensor> sum_alone;
  for (int64_t row = 0; row < 3; ++row) {
    const auto t = b.tokens.narrow(0, row, 1), mask = b.mask.narrow(0, row, 1);
    const auto g = grads(loss_of(run(m, t, mask, o), targets.narrow(0, row, 1), mask));
    if (sum_alone.empty()) {
      sum_alone = g;
    } else {
      for (size_t i = 0; i < g.size(); ++i) sum_alone[i] = sum_alone[i] + g[i];
    }
  }
  for (Recompute r : {Recompute::kNone, Recompute::kWindow}) {
    const auto g = grads(loss_of(run(m, b.tokens, b.mask, o, r), targets, b.mask));
    double worst = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      worst = std::max(worst, relative_error(g[i], sum_alone[i]));
    }
    EXPECT_LT(worst, 1e-11) << "recompute " << (r == Recompute::kWindow ? "window" : "none");
  }
}

}  // namespace hypnos::sleep
