// Optimizer-state sharding without a process group: whole parameters are assigned to ranks by size,
// deterministically; an optimizer steps and keeps state only for the parameters it owns, and hands
// the gradients of the others back untouched; a state moved parameter by parameter into another
// optimizer (what the gather before a checkpoint does) continues bitwise. The 2-rank runs are in
// tests/cli/shard_optimizer_test.sh.
#include "hypnos/train/optimizer_sharding.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/train/optimizer.h"

namespace hypnos::train {
namespace {

std::vector<at::Tensor> of_sizes(const std::vector<int64_t>& sizes) {
  std::vector<at::Tensor> out;
  for (int64_t n : sizes) out.push_back(at::zeros({n}));
  return out;
}

TEST(OptimizerSharding, AssignsWholeParametersLargestFirstToTheLightestRank) {
  // 100 -> 0; 60 -> 1; 50 -> 1 (60 < 100); 40 -> 0 (100 < 110); 10 -> 1 (110 < 140).
  EXPECT_EQ(assign_owners(of_sizes({10, 60, 100, 40, 50}), 2),
            (std::vector<int64_t>{1, 1, 0, 0, 1}));
  // Equal sizes keep their order: ranks take turns.
  EXPECT_EQ(assign_owners(of_sizes({8, 8, 8, 8}), 2), (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_EQ(assign_owners(of_sizes({5, 7}), 1), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(assign_owners(of_sizes({5}), 3), (std::vector<int64_t>{0}));  // ranks may own nothing
  EXPECT_THROW(assign_owners(of_sizes({5}), 0), std::invalid_argument);
}

// Two same-shaped Muon matrices, one more, and AdamW parameters, with fixed gradients.
struct Toy : torch::nn::Module {
  Toy() {
    torch::manual_seed(4);
    a = register_parameter("a", torch::randn({6, 4}));
    b = register_parameter("b", torch::randn({6, 4}));
    c = register_parameter("c", torch::randn({3, 5}));
    scale = register_parameter("scale", torch::randn({7}));
    emb = register_parameter("emb", torch::randn({9, 4}));
  }
  void set_grads(int seed) {
    torch::manual_seed(seed);
    for (auto& p : parameters()) p.mutable_grad() = torch::randn_like(p);
  }
  std::vector<at::Tensor> values() {
    std::vector<at::Tensor> out;
    for (auto& p : parameters()) out.push_back(p.detach().clone());
    return out;
  }
  at::Tensor a, b, c, scale, emb;
};

TEST(OptimizerSharding, AnOptimizerStepsAndKeepsStateOnlyForWhatItOwns) {
  Toy whole, part;
  Optimizer full(split_parameters(whole), OptimizerOptions{});
  Optimizer sharded(split_parameters(part), OptimizerOptions{});
  const auto params = sharded.parameters();  // Muon's a, b, c, then AdamW's scale, emb
  ASSERT_EQ(params.size(), 5u);
  const std::vector<bool> owned{true, false, true, false, true};
  sharded.set_owned(owned);
  const auto before = part.values();
  for (int step = 0; step < 3; ++step) {
    whole.set_grads(10 + step);
    part.set_grads(10 + step);
    std::vector<const void*> grads;
    for (const auto& p : params) grads.push_back(p.grad().data_ptr());
    full.step();
    sharded.step();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].grad().data_ptr(), grads[i]) << "the gradient of parameter " << i;
    }
  }
  const auto after = part.values(), reference = whole.values();
  // The module's order (a, b, c, scale, emb) is the optimizer's: Muon's, then AdamW's.
  const auto order = part.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!owned[i]) {
      EXPECT_TRUE(after[i].equal(before[i])) << order[i].key();
      EXPECT_TRUE(sharded.state_of(i).empty()) << order[i].key();
      continue;
    }
    // Muon batches same-shaped matrices: `a` alone vs with `b` is a round-off difference.
    const double diff = (after[i] - reference[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-6 * reference[i].abs().max().item<double>()) << order[i].key();
    EXPECT_FALSE(sharded.state_of(i).empty()) << order[i].key();
  }
  EXPECT_THROW(sharded.set_owned({true}), std::invalid_argument);
}

TEST(OptimizerSharding, StateMovedParameterByParameterContinuesBitwise) {
  Toy first, second;
  Optimizer source(split_parameters(first), OptimizerOptions{});
  for (int step = 0; step < 2; ++step) {
    first.set_grads(20 + step);
    source.step();
  }
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < first.parameters().size(); ++i) {
      second.parameters()[i].copy_(first.parameters()[i]);
    }
  }
  Optimizer target(split_parameters(second), OptimizerOptions{});
  for (size_t i = 0; i < source.parameters().size(); ++i) {
    std::vector<at::Tensor> copy;
    for (const auto& t : source.state_of(i)) copy.push_back(t.clone());
    target.set_state_of(i, copy);
  }
  first.set_grads(30);
  second.set_grads(30);
  source.step();
  target.step();
  const auto a = first.values(), b = second.values();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].equal(b[i])) << i;
  // Dropping what it does not own frees the state of those parameters.
  target.set_owned({true, false, false, false, true});
  target.drop_unowned_state();
  EXPECT_FALSE(target.state_of(0).empty());
  EXPECT_TRUE(target.state_of(1).empty());
  EXPECT_TRUE(target.state_of(3).empty());
  EXPECT_FALSE(target.state_of(4).empty());
}

}  // namespace
}  // namespace hypnos::train
