// The module options pretrained families need, each against its definition written out here:
// attention with q/k/v biases, grouped-query heads, rotate-half RoPE and a sliding window; a SwiGLU
// of an explicit width; a JetBlock with K != V, its own output-norm epsilon and Jet-Nemotron's
// parameter names. Gradients of the new paths against central differences in double.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "hypnos/nn/attention.h"
#include "hypnos/nn/block.h"
#include "hypnos/nn/hybrid_lm.h"
#include "hypnos/nn/jet_block.h"
#include "hypnos/nn/mlp.h"
#include "testing/numeric.h"

namespace hypnos::nn {
namespace {

/// Qwen2 attention written out (HF's formulas): rotate_half RoPE with cos/sin [T, Dh] = the angles
/// twice over, kv head h / (H / H_kv) for query head h, query i sees keys i - window < j <= i.
at::Tensor qwen2_attention(AttentionImpl& a, const at::Tensor& x, int64_t window) {
  const int64_t B = x.size(0), T = x.size(1), H = a.options.n_heads();
  const int64_t Hkv = a.options.kv_heads(), Dh = a.options.dim();
  auto heads = [&](const at::Tensor& t, int64_t n) {
    return t.view({B, T, n, Dh}).transpose(1, 2);
  };
  at::Tensor q = heads(a.q_proj(x), H), k = heads(a.k_proj(x), Hkv), v = heads(a.v_proj(x), Hkv);
  const auto opts = x.options();
  const at::Tensor inv =
      1.0 / at::pow(a.options.rope_base(), at::arange(0, Dh, 2, opts) / static_cast<double>(Dh));
  const at::Tensor ang = at::arange(0, T, opts).unsqueeze(1) * inv.unsqueeze(0);
  const at::Tensor emb = at::cat({ang, ang}, -1), cos = emb.cos(), sin = emb.sin();
  auto rot_half = [](const at::Tensor& t) {
    const auto c = t.chunk(2, -1);
    return at::cat({-c[1], c[0]}, -1);
  };
  q = q * cos + rot_half(q) * sin;
  k = k * cos + rot_half(k) * sin;
  k = k.repeat_interleave(H / Hkv, 1);
  v = v.repeat_interleave(H / Hkv, 1);
  at::Tensor s = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(Dh));
  const at::Tensor i = at::arange(T, opts.dtype(at::kLong)).unsqueeze(1);
  const at::Tensor j = at::arange(T, opts.dtype(at::kLong)).unsqueeze(0);
  at::Tensor ok = j <= i;
  if (window > 0) ok = ok & (j > i - window);
  s = s.masked_fill(ok.logical_not(), -std::numeric_limits<double>::infinity());
  const at::Tensor y = at::matmul(at::softmax(s, -1), v);
  return a.o_proj(y.transpose(1, 2).reshape({B, T, H * Dh}));
}

AttentionOptions qwen2_options(int64_t window) {
  // 6 query heads over 2 kv heads, head dim 10 (not d_model / H), biases, rotate-half RoPE.
  return AttentionOptions(24, 6)
      .n_kv_heads(2)
      .head_dim(10)
      .bias(true)
      .rope_style(RopeStyle::kHalf)
      .rope_base(500.0)
      .window(window);
}

}  // namespace

TEST(PretrainedModules, GroupedQueryAttentionWithBiasesAndHalfRopeIsQwen2Attention) {
  torch::manual_seed(11);
  for (int64_t window : {0, 5}) {
    Attention a(qwen2_options(window));
    a->to(torch::kDouble);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : a->parameters()) p.normal_(0, 0.3);
    }
    const auto x = torch::randn({2, 13, 24}, torch::kDouble);
    torch::NoGradGuard no_grad;
    const auto out = a->forward(x, {});
    EXPECT_LT(testing::relative_error(out.y, qwen2_attention(*a, x, window)), 1e-12)
        << "window " << window;
    EXPECT_EQ(out.written.key.sizes(), (at::IntArrayRef{2, 2, 13, 10}));  // kv heads are stored
    EXPECT_EQ(a->q_proj->bias.size(0), 60);
    EXPECT_EQ(a->k_proj->bias.size(0), 20);
    EXPECT_FALSE(a->o_proj->bias.defined());
  }
}

TEST(PretrainedModules, SlidingWindowIsTheTighterOfItsWindowAndTheCallersSpan) {
  torch::manual_seed(12);
  Attention a(qwen2_options(5)), b(qwen2_options(0));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
  const auto x = torch::randn({1, 11, 24});
  EXPECT_TRUE(at::allclose(a->forward(x, {}).y, b->forward(x, {}, 5).y, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(a->forward(x, {}, 3).y, b->forward(x, {}, 3).y, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(a->forward(x, {}, 9).y, b->forward(x, {}, 5).y, 1e-6, 1e-6));
}

TEST(PretrainedModules, GroupedQueryAttentionGradientsMatchCentralDifferences) {
  torch::manual_seed(13);
  Attention a(qwen2_options(4));
  a->to(torch::kDouble);
  const auto x = torch::randn({1, 7, 24}, torch::kDouble);
  const auto w = torch::randn({1, 7, 24}, torch::kDouble);
  // The loss reads q_proj.bias and k_proj.weight from its inputs (swapped into the module).
  auto loss = [&](const std::vector<at::Tensor>& in) {
    auto* m = a.get();
    const at::Tensor saved_qb = m->q_proj->bias, saved_kw = m->k_proj->weight;
    m->q_proj->bias = in[1];
    m->k_proj->weight = in[2];
    const at::Tensor y = m->forward(in[0], {}).y;
    m->q_proj->bias = saved_qb;
    m->k_proj->weight = saved_kw;
    return (y * w).sum();
  };
  const auto errors = testing::gradient_check_errors(
      loss, {x, a->q_proj->bias.detach().clone(), a->k_proj->weight.detach().clone()}, 1e-6, 40);
  for (double e : errors) EXPECT_LT(e, 1e-6);
}

TEST(PretrainedModules, SwiGluTakesAnExplicitHiddenWidth) {
  SwiGluMlp m(MlpOptions(16).hidden(40));
  EXPECT_EQ(m->gate_proj->weight.sizes(), (at::IntArrayRef{40, 16}));
  EXPECT_EQ(m->down_proj->weight.sizes(), (at::IntArrayRef{16, 40}));
  EXPECT_EQ(SwiGluMlp(MlpOptions(16))->hidden(), 48);  // round_up(2 * 4 * 16 / 3, 8)
}

TEST(PretrainedModules, JetBlockWithHfNamesHasJetNemotronsKeysAndKDifferentFromV) {
  const auto o =
      JetBlockOptions(32, 2, 12, 20).generator_reduction(4).hf_names(true).norm_eps(1e-5);
  JetBlock jet(o);
  std::map<std::string, std::vector<int64_t>> want{
      {"q_proj.weight", {24, 32}},
      {"k_proj.weight", {24, 32}},
      {"v_proj.weight", {40, 32}},
      {"g_proj.weight", {40, 32}},
      {"a_proj.weight", {2, 32}},
      {"b_proj.weight", {2, 32}},
      {"A_log", {2}},
      {"dt_bias", {2}},
      {"dynamic_conv1d.kernel_generator.w1.weight", {10, 32}},
      {"dynamic_conv1d.kernel_generator.w2.weight", {160, 10}},
      {"dynamic_conv1d.kernel_generator.w2.bias", {160}},
      {"o_norm.weight", {20}},
      {"o_proj.weight", {32, 40}}};
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& p : jet->named_parameters()) got[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(got, want);
  EXPECT_EQ(jet->o_norm->options.eps(), 1e-5);
  // kernel_down / kernel_up are the registered generator, in the module and in a clone.
  EXPECT_TRUE(jet->kernel_down->weight.is_same(jet->dynamic_conv1d->kernel_generator->w1->weight));
  auto copy = std::dynamic_pointer_cast<JetBlockImpl>(jet->clone());
  EXPECT_TRUE(copy->kernel_up->weight.is_same(copy->dynamic_conv1d->kernel_generator->w2->weight));
  EXPECT_TRUE(at::equal(copy->kernel_up->bias, jet->kernel_up->bias));
}

TEST(PretrainedModules, JetBlockWithKDifferentFromVGradientsMatchCentralDifferences) {
  torch::manual_seed(14);
  JetBlock jet(JetBlockOptions(16, 2, 6, 10)
                   .generator_reduction(4)
                   .hf_names(true)
                   .backend(ops::GdnBackend::kReference));
  jet->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    jet->kernel_up->weight.normal_(0, 0.3);
  }
  const auto x = torch::randn({1, 9, 16}, torch::kDouble);
  const auto w = torch::randn({1, 9, 16}, torch::kDouble);
  auto loss = [&](const std::vector<at::Tensor>& in) {
    auto* m = jet.get();
    const at::Tensor saved = m->kernel_down->weight;
    m->kernel_down->weight = in[1];
    const at::Tensor y = m->forward(in[0], {}).y;
    m->kernel_down->weight = saved;
    return (y * w).sum();
  };
  const auto errors = testing::gradient_check_errors(
      loss, {x, jet->kernel_down->weight.detach().clone()}, 1e-6, 40);
  for (double e : errors) EXPECT_LT(e, 1e-6);
}

TEST(PretrainedModules, HfNamesGiveTheCheckpointKeysAndTiedEmbeddingsNoHead) {
  ModelOptions o;
  o.vocab_size = 50;
  o.d_model = 32;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.pattern = "JAS";
  o.swa_window = 4;
  o.mlp = MlpKind::kSwiglu;
  o.mlp_hidden = 48;
  o.ssm_heads = 2;
  o.head_dim_k = 8;
  o.head_dim_v = 12;
  o.attn_bias = true;
  o.tie_embeddings = true;
  o.names = ParameterNames::kHf;
  HybridLM m(o);
  auto params = m->named_parameters();
  for (const char* key :
       {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.dynamic_conv1d.kernel_generator.w2.bias",
        "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.self_attn.q_proj.bias", "model.layers.2.self_attn.k_proj.bias"}) {
    EXPECT_NE(params.find(key), nullptr) << key;
  }
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);
  EXPECT_EQ(params.size(), 1u + 1u + (2 + 13 + 3) + (2 + 7 + 3) * 2);
  EXPECT_TRUE(m->embed_tokens->weight.is_same(m->decoder->embed_tokens->weight));
  // Tied: the head reads the embedding matrix.
  const auto tokens = torch::randint(0, 50, {2, 6});
  torch::NoGradGuard no_grad;
  const auto h = m->forward_blocks(m->embed(tokens), memory::ModelMemory::empty(3), 0, 3).first;
  EXPECT_TRUE(at::equal(m->forward(tokens), at::linear(m->norm(h), m->embed_tokens->weight)));
  // A clone points at its own decoder.
  auto copy = std::dynamic_pointer_cast<HybridLMImpl>(m->clone());
  EXPECT_TRUE(copy->blocks.ptr() == copy->decoder->layers.ptr());
  EXPECT_TRUE(at::equal(copy->forward(tokens), m->forward(tokens)));
}

TEST(PretrainedModules, OuroSandwichBlockIsItsFourNormFormula) {
  torch::manual_seed(15);
  ModelOptions o;
  o.vocab_size = 10;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = "A";
  o.mlp = MlpKind::kSwiglu;
  o.mlp_hidden = 24;
  o.rope_style = RopeStyle::kHalf;
  o.names = ParameterNames::kHf;
  Block block(BlockOptions(o, 'A').sandwich(true));
  block->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : block->parameters()) p.normal_(0.5, 0.3);
  }
  std::vector<std::string> keys;
  for (const auto& p : block->named_parameters()) keys.push_back(p.key());
  for (const char* k : {"input_layernorm.weight", "input_layernorm_2.weight",
                        "post_attention_layernorm.weight", "post_attention_layernorm_2.weight"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
  const auto x = torch::randn({2, 5, 16}, torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    auto& b = *block;
    const at::Tensor h =
        x + b.mixer_out_norm(b.attention->forward(b.mixer_norm(x), memory::LayerMemory{}).y);
    const at::Tensor want = h + b.mlp_out_norm(b.swiglu_mlp(b.mlp_norm(h)));
    EXPECT_LT(testing::relative_error(block->forward(x, {}).y, want), 1e-14);
  }
  // Gradients through the two extra norms against central differences.
  const auto w = torch::randn({2, 5, 16}, torch::kDouble);
  auto loss = [&](const std::vector<at::Tensor>& in) {
    auto& b = *block;
    const at::Tensor s1 = b.mixer_out_norm->weight, s2 = b.mlp_out_norm->weight;
    b.mixer_out_norm->weight = in[1];
    b.mlp_out_norm->weight = in[2];
    const at::Tensor y = b.forward(in[0], {}).y;
    b.mixer_out_norm->weight = s1;
    b.mlp_out_norm->weight = s2;
    return (y * w).sum();
  };
  const auto errors =
      testing::gradient_check_errors(loss,
                                     {x, block->mixer_out_norm->weight.detach().clone(),
                                      block->mlp_out_norm->weight.detach().clone()},
                                     1e-6, 40);
  for (double e : errors) EXPECT_LT(e, 1e-6);
}

TEST(PretrainedModules, OuroInsertedJetBlocksRunAfterTheirLayerAndKeepTheirNames) {
  ModelOptions o;
  o.vocab_size = 10;
  o.d_model = 16;
  o.n_heads = 2;
  o.pattern = "AAAA";
  o.mlp = MlpKind::kSwiglu;
  o.sandwich = true;
  o.loop_norm = true;
  o.exit_gate = true;
  o.inserted_jet_after = {3, 1};
  o.names = ParameterNames::kHf;
  HybridLM m(o);
  EXPECT_EQ(m->n_layers(), 6);
  // Execution order: layers 0, 1, jet_layers.1 (after 1), layers 2, 3, jet_layers.0 (after 3).
  EXPECT_TRUE(m->blocks[2].get() == m->decoder->jet_layers[1].get());
  EXPECT_TRUE(m->blocks[5].get() == m->decoder->jet_layers[0].get());
  EXPECT_TRUE(m->blocks[4].get() == m->decoder->layers[3].get());
  auto params = m->named_parameters();
  EXPECT_NE(params.find("model.jet_layers.0.input_layernorm.weight"), nullptr);
  EXPECT_NE(params.find("model.jet_layers.1.self_attn.dynamic_conv1d.kernel_generator.w1.weight"),
            nullptr);
  EXPECT_EQ(params.find("model.jet_layers.0.mlp.up_proj.weight"), nullptr);
  EXPECT_EQ(params.find("model.jet_layers.0.post_attention_layernorm.weight"), nullptr);
  ASSERT_NE(params.find("model.early_exit_gate.weight"), nullptr);
  EXPECT_FALSE(params["model.early_exit_gate.weight"].requires_grad());  // kept, never trained
  EXPECT_FALSE(params["model.early_exit_gate.bias"].requires_grad());
  auto copy = std::dynamic_pointer_cast<HybridLMImpl>(m->clone());
  EXPECT_TRUE(copy->blocks[2].get() == copy->decoder->jet_layers[1].get());
  const auto tokens = torch::randint(0, 10, {1, 7});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(copy->forward(tokens), m->forward(tokens)));
}

}  // namespace hypnos::nn
