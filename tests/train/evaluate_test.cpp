// evaluate: a prediction is the argmax over the task's answer ids (Rule 110: the bits 0 and 1),
// never a query or other id that the metric's definition excludes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/tasks/rule110.h"
#include "hypnos/train/evaluate.h"

namespace hypnos::train {

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
  torch::manual_seed(0);
  nn::ModelOptions mo;
  mo.vocab_size = task.vocab_size();
  mo.d_model = 16;
  mo.n_heads = 2;
  mo.pattern = "AG";
  nn::HybridLM m(mo);
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
