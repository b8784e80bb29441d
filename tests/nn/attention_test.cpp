// Attention and RoPE: RoPE scores depend only on relative position; a retained KV block with a span
// limit equals explicit softmax attention with a sliding-window mask over the concatenated
// sequence.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hypnos/nn/attention.h"
#include "hypnos/nn/rope.h"
#include "testing/numeric.h"

namespace hypnos::nn {

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  torch::manual_seed(0);
  const auto q = torch::randn({1, 1, 1, 8}, torch::kDouble),
             k = torch::randn({1, 1, 1, 8}, torch::kDouble);
  auto score = [&](int64_t pq, int64_t pk) {
    return (apply_rope(q, pq, 10000.0) * apply_rope(k, pk, 10000.0)).sum().item<double>();
  };
  EXPECT_NEAR(score(5, 2), score(13, 10), 1e-12);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-6);
  // Rotation preserves the norm of every pair.
  EXPECT_NEAR(apply_rope(q, 7, 10000.0).norm().item<double>(), q.norm().item<double>(), 1e-12);
}

TEST(Rope, RowsOfATableFromZeroEqualATableAtTheirOffsetBitwise) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat);
  const RopeTable whole = rope_table(0, 40, 16, 10000.0, opts);
  const RopeTable part = rope_table(13, 9, 16, 10000.0, opts);
  EXPECT_TRUE(at::equal(whole.rows(13, 9).cos, part.cos));
  EXPECT_TRUE(at::equal(whole.rows(13, 9).sin, part.sin));
  const auto x = torch::randn({2, 3, 9, 16});
  EXPECT_TRUE(at::equal(apply_rope(x, whole.rows(13, 9)), apply_rope(x, 13, 10000.0)));
  EXPECT_THROW(whole.rows(35, 9), c10::Error);
}

TEST(Attention, CachedRopeTablesGiveAFreshModulesOutputsBitwise) {
  torch::manual_seed(4);
  Attention cached(AttentionOptions(16, 2));
  for (int64_t T : {5, 9, 3}) {  // the table grows at 9 and is reused, narrowed, for 3
    Attention fresh(AttentionOptions(16, 2));
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < fresh->parameters().size(); ++i) {
      fresh->parameters()[i].copy_(cached->parameters()[i]);
    }
    const auto x = torch::randn({2, T, 16});
    EXPECT_TRUE(at::equal(cached->forward(x, {}).y, fresh->forward(x, {}).y)) << "T = " << T;
  }
}

// Softmax attention written out: queries at positions R..R+T-1 over keys 0..R+T-1, seeing keys at
// most span-1 back.
at::Tensor explicit_attention(AttentionImpl& a, const at::Tensor& x_all, int64_t R, int64_t span) {
  const int64_t B = x_all.size(0), N = x_all.size(1), H = a.options.n_heads();
  const int64_t Dh = a.options.d_model() / H, T = N - R;
  auto heads = [&](const at::Tensor& t) { return t.view({B, -1, H, Dh}).transpose(1, 2); };
  const auto q = apply_rope(heads(a.q_proj(x_all.narrow(1, R, T))), R, 10000.0);
  const auto k = apply_rope(heads(a.k_proj(x_all)), 0, 10000.0);
  const auto v = heads(a.v_proj(x_all));
  auto scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(Dh));
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      const bool visible = j <= R + i && j > R + i - span;
      if (!visible) scores.select(2, i).select(2, j).fill_(-INFINITY);
    }
  }
  const auto y = at::matmul(scores.softmax(-1), v);
  return a.o_proj(y.transpose(1, 2).reshape({B, T, -1}));
}

TEST(Attention, RetainedBlockWithSpanEqualsSlidingWindowSoftmax) {
  torch::manual_seed(1);
  Attention attn(AttentionOptions(16, 2));
  attn->to(torch::kDouble);
  const int64_t R = 5, T = 7, span = 4;
  const auto x_all = torch::randn({3, R + T, 16}, torch::kDouble);
  memory::LayerMemory mem;
  {
    torch::NoGradGuard g;
    const auto prev = x_all.narrow(1, 0, R);
    mem.key = attn->k_proj(prev).view({3, R, 2, 8}).transpose(1, 2);
    mem.value = attn->v_proj(prev).view({3, R, 2, 8}).transpose(1, 2);
  }
  const MixerOutput out = attn(x_all.narrow(1, R, T), mem, span);
  EXPECT_LT(testing::relative_error(out.y, explicit_attention(*attn, x_all, R, span)), 1e-12);
  EXPECT_EQ(out.written.retained(), R + T);
}

TEST(Attention, NoRetainedBlockIsCausal) {
  torch::manual_seed(2);
  Attention attn(AttentionOptions(16, 4));
  attn->to(torch::kDouble);
  const auto x = torch::randn({2, 9, 16}, torch::kDouble);
  const MixerOutput out = attn(x, memory::LayerMemory{}, 0);
  EXPECT_LT(testing::relative_error(out.y, explicit_attention(*attn, x, 0, 1000)), 1e-12);
}

}  // namespace hypnos::nn
