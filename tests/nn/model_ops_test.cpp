// The model hands its OpsOptions (model.gdn_backend, ...) to every layer, and the layers to the
// ops: the delta-rule op runs the backend the config names (its per-backend run counter moves),
// with the same output for reference and chunked; attention (RoPE) and the SwiGLU MLP hold the same
// choices.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/hybrid_lm.h"
#include "ops/gated_delta_rule_backends.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

HybridLM model_with(ops::GdnBackend backend, uint64_t seed) {
  torch::manual_seed(seed);
  ModelOptions o;
  o.vocab_size = 8;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = "AGJ";
  o.mlp = MlpKind::kSwiglu;
  o.ops.gdn_backend = backend;
  o.ops.fused_ops = false;
  HybridLM model(o);
  model->to(torch::kDouble);
  return model;
}

}  // namespace

TEST(ModelOps, TheConfiguredBackendReachesTheDeltaRuleOp) {
  const at::Tensor tokens = at::randint(0, 8, {2, 11}, at::TensorOptions().dtype(at::kLong));
  HybridLM reference = model_with(ops::GdnBackend::kReference, 5);
  HybridLM chunked = model_with(ops::GdnBackend::kChunked, 5);  // same seed: same weights
  torch::NoGradGuard no_grad;

  const int64_t ref_before = ops::detail::gdn_backend_runs(ops::GdnBackend::kReference);
  const int64_t chunked_before = ops::detail::gdn_backend_runs(ops::GdnBackend::kChunked);
  const at::Tensor a = reference->forward(tokens);
  // One G and one J block: two calls, both on the reference backend.
  EXPECT_EQ(ops::detail::gdn_backend_runs(ops::GdnBackend::kReference) - ref_before, 2);
  EXPECT_EQ(ops::detail::gdn_backend_runs(ops::GdnBackend::kChunked) - chunked_before, 0);

  const at::Tensor b = chunked->forward(tokens);
  EXPECT_EQ(ops::detail::gdn_backend_runs(ops::GdnBackend::kChunked) - chunked_before, 2);
  EXPECT_EQ(ops::detail::gdn_backend_runs(ops::GdnBackend::kReference) - ref_before, 2);
  EXPECT_LT(testing::relative_error(b, a), 1e-10);
}

TEST(ModelOps, EveryLayerHoldsTheModelsOpsOptions) {
  HybridLM model = model_with(ops::GdnBackend::kChunked, 6);
  ASSERT_EQ(model->n_layers(), 3);
  for (int64_t i = 0; i < 3; ++i) {
    const BlockImpl& block = model->block(i);
    ASSERT_TRUE(block.swiglu_mlp);
    EXPECT_FALSE(block.swiglu_mlp->options.ops().fused_ops) << i;
  }
  EXPECT_FALSE(model->block(0).attention->options.ops().fused_ops);
  EXPECT_EQ(model->block(1).gdn->options.ops().gdn_backend, ops::GdnBackend::kChunked);
  EXPECT_FALSE(model->block(1).gdn->options.ops().fused_ops);
  EXPECT_EQ(model->block(2).jet->options.ops().gdn_backend, ops::GdnBackend::kChunked);
}

}  // namespace hypnos::nn
