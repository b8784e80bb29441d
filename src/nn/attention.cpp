// Attention: projections, RoPE with an offset for retained tokens,
// at::scaled_dot_product_attention.
#include "hypnos/nn/attention.h"

#include "hypnos/nn/rope.h"

namespace hypnos::nn {

AttentionImpl::AttentionImpl(AttentionOptions options_) : options(options_) {
  TORCH_CHECK(options.head_dim() > 0 || options.d_model() % options.n_heads() == 0,
              "Attention: d_model (", options.d_model(), ") must be divisible by n_heads (",
              options.n_heads(), ") when head_dim is not given");
  TORCH_CHECK(options.n_heads() % options.kv_heads() == 0, "Attention: n_heads (",
              options.n_heads(), ") must be a multiple of n_kv_heads (", options.kv_heads(), ")");
  TORCH_CHECK(options.dim() % 2 == 0, "Attention: the head dim (", options.dim(),
              ") must be even (RoPE rotates pairs)");
  reset();
}

void AttentionImpl::reset() {
  const int64_t d = options.d_model(), q = options.n_heads() * options.dim();
  const int64_t kv = options.kv_heads() * options.dim();
  auto linear = [&](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", linear(d, q, options.bias()));
  k_proj = register_module("k_proj", linear(d, kv, options.bias()));
  v_proj = register_module("v_proj", linear(d, kv, options.bias()));
  o_proj = register_module("o_proj", linear(q, d, false));
}

RopeTable AttentionImpl::rope_rows(int64_t length, int64_t dim, const at::TensorOptions& options) {
  // Every window and sleep pass asks for the same few lengths: the table is computed once per
  // device and dtype (and again when a longer one is asked for) instead of about ten kernels a
  // call.
  const auto angle_type = options.dtype() == at::kDouble ? at::kDouble : at::kFloat;
  RopeTable& cached = rope_cache_[{options.device().str(), angle_type}];
  if (!cached.cos.defined() || cached.cos.size(0) < length) {
    // A replaced table stays alive: a CUDA graph captured with it still reads its memory.
    if (cached.cos.defined()) rope_retired_.push_back(cached);
    cached = rope_table(0, length, dim, this->options.rope_base(), options);
  }
  return cached.rows(0, length);
}

const at::Tensor& AttentionImpl::attention_mask(const at::Device& device, int64_t R, int64_t T,
                                                int64_t span) {
  at::Tensor& mask = mask_cache_[{device.str(), R, T, span}];
  if (!mask.defined()) {
    // Query i sits at position R + i; it sees key j iff R + i - span < j <= R + i.
    const auto idx = at::TensorOptions().device(device).dtype(at::kLong);
    const at::Tensor qpos = at::arange(R, R + T, idx).unsqueeze(1);
    const at::Tensor kpos = at::arange(0, R + T, idx).unsqueeze(0);
    mask = kpos <= qpos;
    if (span > 0) mask = mask & (kpos > qpos - span);
  }
  return mask;
}

MixerOutput AttentionImpl::forward(const at::Tensor& x, const memory::LayerMemory& memory,
                                   int64_t span) {
  const int64_t B = x.size(0), T = x.size(1), H = options.n_heads();
  const int64_t Hkv = options.kv_heads(), Dh = options.dim();
  auto heads = [&](const at::Tensor& t, int64_t n) {
    return t.view({B, T, n, Dh}).transpose(1, 2);
  };
  // q: [B, H, T, Dh], k, v: [B, H_kv, T, Dh], from one matmul over the concatenated weights (one
  // launch, not three).
  const at::Tensor bias =
      options.bias() ? at::cat({q_proj->bias, k_proj->bias, v_proj->bias}) : at::Tensor();
  const auto qkv = at::linear(x, at::cat({q_proj->weight, k_proj->weight, v_proj->weight}), bias)
                       .split_with_sizes({H * Dh, Hkv * Dh, Hkv * Dh}, -1);
  at::Tensor q = heads(qkv[0], H), k = heads(qkv[1], Hkv), v = heads(qkv[2], Hkv);
  const int64_t R = memory.retained();
  if (R > 0) {
    k = at::cat({memory.key, k}, 2);
    v = at::cat({memory.value, v}, 2);
  }
  // Keys sit at positions 0..R+T-1 and queries at R..R+T-1: one table serves both.
  const RopeTable table = rope_rows(R + T, Dh, x.options());
  const RopeStyle style = options.rope_style();
  const at::Tensor q_rot = apply_rope(q, table.rows(R, T), style, options.ops());
  at::Tensor k_rot = apply_rope(k, table, style, options.ops()), v_all = v;
  if (Hkv != H) {  // grouped-query attention: each kv head serves H / H_kv consecutive query heads
    k_rot = k_rot.repeat_interleave(H / Hkv, 1);
    v_all = v.repeat_interleave(H / Hkv, 1);
  }
  // A sliding-window layer sees at most `window` keys whatever the caller allows.
  if (options.window() > 0) span = span > 0 ? std::min(span, options.window()) : options.window();
  at::Tensor y;
  if (R == 0 && (span == 0 || span >= T)) {
    y = at::scaled_dot_product_attention(q_rot, k_rot, v_all, {}, 0.0, /*is_causal=*/true);
  } else {
    y = at::scaled_dot_product_attention(q_rot, k_rot, v_all,
                                         attention_mask(x.device(), R, T, span));
  }
  MixerOutput out;
  out.y = o_proj(y.transpose(1, 2).reshape({B, T, H * Dh}));
  out.written.key = k;
  out.written.value = v;
  return out;
}

}  // namespace hypnos::nn
