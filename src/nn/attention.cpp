// Attention: projections, RoPE with an offset for retained tokens,
// at::scaled_dot_product_attention.
#include "hypnos/nn/attention.h"

#include "hypnos/nn/rope.h"

namespace hypnos::nn {

AttentionImpl::AttentionImpl(AttentionOptions options_) : options(options_) {
  TORCH_CHECK(options.d_model() % options.n_heads() == 0, "Attention: d_model (", options.d_model(),
              ") must be divisible by n_heads (", options.n_heads(), ")");
  reset();
}

void AttentionImpl::reset() {
  const int64_t d = options.d_model();
  auto linear = [d] { return torch::nn::LinearOptions(d, d).bias(false); };
  q_proj = register_module("q_proj", torch::nn::Linear(linear()));
  k_proj = register_module("k_proj", torch::nn::Linear(linear()));
  v_proj = register_module("v_proj", torch::nn::Linear(linear()));
  o_proj = register_module("o_proj", torch::nn::Linear(linear()));
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
  const int64_t Dh = options.d_model() / H;
  auto heads = [&](const at::Tensor& t) { return t.view({B, T, H, Dh}).transpose(1, 2); };
  // q, k, v: [B, H, T, Dh], from one matmul over the concatenated weights (one launch, not three).
  const auto qkv =
      at::linear(x, at::cat({q_proj->weight, k_proj->weight, v_proj->weight})).chunk(3, -1);
  at::Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  const int64_t R = memory.retained();
  if (R > 0) {
    k = at::cat({memory.key, k}, 2);
    v = at::cat({memory.value, v}, 2);
  }
  // Keys sit at positions 0..R+T-1 and queries at R..R+T-1: one table serves both.
  const RopeTable table = rope_rows(R + T, Dh, x.options());
  const at::Tensor q_rot = apply_rope(q, table.rows(R, T));
  const at::Tensor k_rot = apply_rope(k, table);
  at::Tensor y;
  if (R == 0 && (span == 0 || span >= T)) {
    y = at::scaled_dot_product_attention(q_rot, k_rot, v, {}, 0.0, /*is_causal=*/true);
  } else {
    y = at::scaled_dot_product_attention(q_rot, k_rot, v, attention_mask(x.device(), R, T, span));
  }
  MixerOutput out;
  out.y = o_proj(y.transpose(1, 2).reshape({B, T, options.d_model()}));
  out.written.key = k;
  out.written.value = v;
  return out;
}

}  // namespace hypnos::nn
