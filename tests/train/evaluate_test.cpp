// evaluate: a prediction is the argmax over the task's answer ids (Rule 110: the bits 0 and 1),
// never a query or other id that the metric's definition excludes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "hypnos/tasks/rng.h"
#include "hypnos/tasks/rule110.h"
#include "hypnos/train/evaluate.h"

namespace hypnos::train {
namespace {

/// A two-block hybrid (attention, GatedDeltaNet) of width 16 with random weights from `seed`.
nn::HybridLM tiny_model(int64_t vocab_size, uint64_t seed) {
  torch::manual_seed(seed);
  nn::ModelOptions mo;
  mo.vocab_size = vocab_size;
  mo.d_model = 16;
  mo.n_heads = 2;
  mo.pattern = "AG";
  return nn::HybridLM(mo);
}

}  // namespace

TEST(Evaluate, ArgmaxOverAnswerIdsPicksAmongThemOnly) {
  const auto scores = torch::tensor({{0.1, 0.3, 5.0, 0.0}, {0.2, -1.0, 3.0, 4.0}});
  EXPECT_TRUE(argmax_over(scores, at::Tensor()).equal(torch::tensor({2, 3})));
  const auto bits = torch::tensor(std::vector<int64_t>{0, 1});
  EXPECT_TRUE(argmax_over(scores, bits).equal(torch::tensor({1, 0})));
  const auto odd = torch::tensor(std::vector<int64_t>{3, 1});
  EXPECT_TRUE(argmax_over(scores, odd).equal(torch::tensor({1, 3})));
}

// A model whose every logit favours query id 2, then 1, then 0: argmax over the whole vocabulary
// would predict 2 everywhere (no label right); over the bits it predicts 1, right exactly where
// the label is 1.
TEST(Evaluate, Rule110PredictionsAreBits) {
  tasks::Rule110Options ro;
  ro.t = 3;
  const tasks::Rule110Task task(ro, 0);
  nn::HybridLM m = tiny_model(task.vocab_size(), 0);
  {
    // Blocks that add nothing (zero output projections and MLPs) and an embedding that is e_0 for
    // every token: the final norm sees e_0 everywhere, so logit j is lm_head[j][0] (times a
    // positive constant).
    torch::NoGradGuard no_grad;
    for (auto& p : m->blocks->named_parameters()) {
      if (p.key().find("o_proj") != std::string::npos ||
          p.key().find("down_proj") != std::string::npos) {
        p.value().zero_();
      }
    }
    m->embed_tokens->weight.zero_();
    m->embed_tokens->weight.select(1, 0).fill_(1.0);
    m->lm_head->weight.zero_();
    m->lm_head->weight[0][0] = 1.0;
    m->lm_head->weight[1][0] = 2.0;
    m->lm_head->weight[2][0] = 3.0;
  }
  sleep::SleepOptions so;
  so.n_passes = 2;
  EvalOptions eo;
  eo.examples = 32;
  eo.batch_size = 16;
  const auto metrics = evaluate(m, task, so, eo);
  int64_t ones = 0;
  for (uint64_t i = 0; i < 32; ++i) {
    const auto ex = task.example(tasks::Split::kTest, i);
    for (size_t p = 0; p < ex.targets.size(); ++p) ones += ex.loss_mask[p] && ex.targets[p] == 1;
  }
  EXPECT_EQ(metrics.overall().positions, 32 * 4);
  EXPECT_GT(ones, 0);
  EXPECT_EQ(metrics.overall().correct, ones);
}

}  // namespace hypnos::train

// ---- evaluation batches of examples of their own lengths (token files)

namespace hypnos::train {
namespace {

/// Examples of given lengths: random tokens below 16, the last two positions scored, one group
/// per example.
class LengthsTask : public tasks::Task {
 public:
  explicit LengthsTask(std::vector<int64_t> lengths) : lengths_(std::move(lengths)) {}
  std::string_view name() const override { return "lengths"; }
  int64_t vocab_size() const override { return 16; }
  int64_t seq_len() const override { return *std::max_element(lengths_.begin(), lengths_.end()); }
  int64_t pad_id() const override { return 15; }
  int64_t test_size() const override { return static_cast<int64_t>(lengths_.size()); }
  int64_t example_length(tasks::Split, uint64_t index) const override { return lengths_[index]; }
  tasks::Example example(tasks::Split split, uint64_t index) const override {
    tasks::Stream s(3, name(), split, index);
    tasks::Example ex;
    const int64_t n = lengths_[index];
    for (int64_t i = 0; i < n; ++i) ex.tokens.push_back(static_cast<int64_t>(s.below(15)));
    ex.targets.assign(ex.tokens.begin() + 1, ex.tokens.end());
    ex.targets.push_back(15);
    ex.loss_mask.assign(n, 0);
    ex.loss_mask[n - 3] = ex.loss_mask[n - 2] = 1;
    ex.groups.push_back({"n=" + std::to_string(n % 3), {n - 3, n - 2}, {}});
    return ex;
  }

 private:
  std::vector<int64_t> lengths_;
};

int64_t padded_tokens(const std::vector<std::vector<uint64_t>>& batches,
                      const std::vector<int64_t>& lengths) {
  int64_t pad = 0;
  for (const auto& b : batches) {
    int64_t longest = 0;
    for (uint64_t i : b) longest = std::max(longest, lengths[i]);
    for (uint64_t i : b) pad += longest - lengths[i];
  }
  return pad;
}

}  // namespace

TEST(EvalBatches, ExamplesOfOneLengthKeepIndexOrder) {
  const LengthsTask task(std::vector<int64_t>(7, 12));
  const auto batches = eval_batches(task, 7, 3);
  EXPECT_EQ(batches, (std::vector<std::vector<uint64_t>>{{0, 1, 2}, {3, 4, 5}, {6}}));
}

TEST(EvalBatches, ExamplesOfTheirOwnLengthsGoLongestFirstEachOnce) {
  const std::vector<int64_t> lengths{5, 9, 6, 9, 3, 7, 8, 4};
  const LengthsTask task(lengths);
  const auto batches = eval_batches(task, 8, 3);
  EXPECT_EQ(batches, (std::vector<std::vector<uint64_t>>{{1, 3, 6}, {5, 2, 0}, {7, 4}}));
  // Padding against index order.
  std::vector<std::vector<uint64_t>> in_order{{0, 1, 2}, {3, 4, 5}, {6, 7}};
  EXPECT_EQ(padded_tokens(batches, lengths), 5);
  EXPECT_EQ(padded_tokens(in_order, lengths), 19);
  // Only the first `examples` indices take part.
  EXPECT_EQ(eval_batches(task, 3, 2), (std::vector<std::vector<uint64_t>>{{1, 2}, {0}}));
  EXPECT_THROW(eval_batches(task, 3, 0), std::invalid_argument);
}

// Sorted, padded batches score every example as it scores alone (batch of one, no padding): the
// same predictions and the same NLL, through a sleep window that evicts mid-example.
TEST(EvalBatches, SortedBatchesScoreEachExampleAsItScoresAlone) {
  const LengthsTask task({13, 30, 17, 9, 30, 22, 11});
  nn::HybridLM m = tiny_model(task.vocab_size(), 1);
  sleep::SleepOptions so;
  so.n_passes = 2;
  so.window = 8;
  EvalOptions batched;
  batched.examples = 7;
  batched.batch_size = 3;
  EvalOptions alone = batched;
  alone.batch_size = 1;
  const auto a = evaluate(m, task, so, batched).overall();
  const auto b = evaluate(m, task, so, alone).overall();
  EXPECT_EQ(a.positions, 14);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_NEAR(a.nll_sum, b.nll_sum, 1e-4 * b.nll_sum);
}

}  // namespace hypnos::train
