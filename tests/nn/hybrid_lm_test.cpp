// HybridLM: HF-style parameter names, pattern-driven construction, options validation, SwiGLU.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/hybrid_lm.h"
#include "nn/tiny_model.h"
#include "testing/numeric.h"

namespace hypnos::nn {

TEST(HybridLM, ParameterNamesAreHuggingFaceStyle) {
  HybridLM m = testing::tiny_model("AGJ", 0);
  const auto params = m->named_parameters();
  for (const char* name :
       {"embed.weight", "blocks.0.mixer_norm.weight", "blocks.0.mixer.q_proj.weight",
        "blocks.0.mixer.o_proj.weight", "blocks.0.mlp.up_proj.weight", "blocks.1.mixer.A_log",
        "blocks.1.mixer.dt_bias", "blocks.1.mixer.q_conv.weight", "blocks.1.mixer.o_norm.weight",
        "blocks.1.mixer.g_proj.weight", "blocks.2.mixer.kernel_up.bias", "blocks.2.mlp_norm.weight",
        "norm.weight", "lm_head.weight"}) {
    EXPECT_NE(params.find(name), nullptr) << name;
  }
  EXPECT_EQ(params.find("blocks.2.mixer.q_conv.weight"), nullptr);  // JetBlock: no q/k/v convs
}

// forward is embed, the blocks in order, the final norm and the head; each block is
// x + mixer(mixer_norm(x)), then + mlp(mlp_norm(.)); and a position's logits never see later
// tokens.
TEST(HybridLM, ForwardIsEmbedBlocksNormHeadAndCausal) {
  HybridLM m = testing::tiny_model("AGJG", 1);
  const auto tokens = torch::randint(0, 8, {3, 11}, torch::kLong);
  const auto logits = m->forward(tokens);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 11, 8}));
  at::Tensor h = m->embed_tokens(tokens);
  for (int64_t i = 0; i < m->n_layers(); ++i) {
    BlockImpl& block = m->block(i);
    const auto normed = block.mixer_norm(h);
    at::Tensor mixed;
    switch (block.options.kind()) {
      case 'A':
        mixed = block.attention->forward(normed, {}).y;
        break;
      case 'G':
        mixed = block.gdn->forward(normed, {}).y;
        break;
      default:
        mixed = block.jet->forward(normed, {}).y;
        break;
    }
    const auto y = h + mixed;
    const auto expected = y + block.gelu_mlp->forward(block.mlp_norm(y));
    EXPECT_LT(testing::relative_error(block.forward(h, {}).y, expected), 1e-14) << "block " << i;
    h = expected;
  }
  EXPECT_LT(testing::relative_error(logits, m->lm_head(m->norm(h))), 1e-14);
  auto later = tokens.clone();
  later.narrow(1, 6, 5).fill_(7);
  const auto changed = m->forward(later);
  EXPECT_TRUE(changed.narrow(1, 0, 6).equal(logits.narrow(1, 0, 6)));
  EXPECT_FALSE(changed.narrow(1, 6, 5).equal(logits.narrow(1, 6, 5)));
}

TEST(HybridLM, SwigluMlpHasTheGeluParameterCount) {
  // At the paper's width the 2/3 hidden rule (rounded up to 8) keeps the two MLPs within 1%.
  GeluMlp gelu(MlpOptions(256));
  SwiGluMlp swiglu(MlpOptions(256));
  auto count = [](const std::vector<at::Tensor>& params) {
    int64_t n = 0;
    for (const auto& p : params) n += p.numel();
    return double(n);
  };
  EXPECT_NEAR(count(swiglu->parameters()), count(gelu->parameters()),
              0.01 * count(gelu->parameters()));
  // And it computes down(silu(gate(x)) * up(x)).
  HybridLM m = testing::tiny_model("AG", 2, 8, MlpKind::kSwiglu);
  SwiGluMlp& mlp = m->block(0).swiglu_mlp;
  const auto x = torch::randn({2, 5, 16}, torch::kDouble);
  const auto expected = mlp->down_proj(at::silu(mlp->gate_proj(x)) * mlp->up_proj(x));
  EXPECT_LT(testing::relative_error(mlp->forward(x), expected), 1e-14);
  EXPECT_EQ(m->forward(torch::zeros({1, 3}, torch::kLong)).size(2), 8);
}

TEST(ModelOptions, ValidationNamesKeyAndValue) {
  ModelOptions o;
  o.vocab_size = 6;
  o.pattern = "AGXG";
  try {
    HybridLM m(o);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model.pattern = 'AGXG'"), std::string::npos) << e.what();
  }
  o.pattern = "AG";
  o.d_model = 250;
  o.n_heads = 4;
  EXPECT_THROW(HybridLM{o}, std::invalid_argument);
}

}  // namespace hypnos::nn

namespace hypnos::nn {

// Under autocast the projections come out in bf16 while the L2 norm of q and k runs in fp32 (norm
// is on autocast's fp32 list): the mixers must hand the op one dtype (found on the GPU machine,
// where training under bf16 autocast failed with "q, k and v have dtypes Float, Float, BFloat16").
TEST(HybridLM, ACloneRunsItsOwnCopiedBlocks) {
  torch::manual_seed(5);
  nn::ModelOptions o;
  o.vocab_size = 7;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = "AGJ";
  HybridLM original(o);
  const auto tokens = torch::randint(0, 7, {2, 9});
  const at::Tensor before = original->forward(tokens);
  auto copy = std::dynamic_pointer_cast<HybridLMImpl>(original->clone());
  {
    torch::NoGradGuard no_grad;
    for (auto& p : original->parameters()) p.zero_();
  }
  EXPECT_TRUE(at::equal(copy->forward(tokens), before));
}

TEST(HybridLM, RunsUnderBf16Autocast) {
  HybridLM m = testing::tiny_model("AGJ", 2);
  m->to(torch::kFloat);
  const auto tokens = torch::randint(0, 8, {2, 9}, torch::kLong);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::Tensor logits;
  try {
    logits = m->forward(tokens);
  } catch (...) {
    at::autocast::set_autocast_enabled(at::kCPU, false);
    throw;
  }
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 8}));
  // bf16 matmuls, fp32 norms and state: within bf16's rounding of the fp32 model's logits.
  EXPECT_LT(testing::relative_error(logits, m->forward(tokens)), 3e-2);
}

}  // namespace hypnos::nn
