// Block: pre-norm residual wiring of one mixer and one MLP (sleep_reference.py Block).
#include "hypnos/nn/block.h"

namespace hypnos::nn {

BlockImpl::BlockImpl(BlockOptions options_) : options(std::move(options_)) {
  reset();
}

void BlockImpl::reset() {
  const ModelOptions& m = options.model();
  const int64_t D = m.d_model;
  // The Hugging Face layout names the same four parts input_layernorm, self_attn,
  // post_attention_layernorm and mlp.
  const bool hf = m.names == ParameterNames::kHf;
  const char* mixer_name = hf ? "self_attn" : "mixer";
  mixer_norm = register_module(hf ? "input_layernorm" : "mixer_norm",
                               RMSNorm(RMSNormOptions(D).eps(m.norm_eps)));
  const auto ssm = GatedDeltaNetOptions(D, m.resolved_ssm_heads(), m.resolved_head_dim_k(),
                                        m.resolved_head_dim_v())
                       .conv_size(m.conv_size)
                       .norm_eps(m.resolved_ssm_norm_eps())
                       .ops(m.ops)
                       .generator_reduction(m.generator_reduction)
                       .hf_names(hf);
  const auto attn = AttentionOptions(D, m.n_heads)
                        .rope_base(m.rope_base)
                        .rope_style(m.rope_style)
                        .n_kv_heads(m.n_kv_heads)
                        .head_dim(m.head_dim)
                        .bias(m.attn_bias)
                        .ops(m.ops);
  switch (options.kind()) {
    case 'A':
      attention = register_module(mixer_name, Attention(attn));
      break;
    case 'S':
      attention =
          register_module(mixer_name, Attention(AttentionOptions(attn).window(m.swa_window)));
      break;
    case 'G':
      gdn = register_module(mixer_name, GatedDeltaNet(ssm));
      break;
    case 'J':
      jet = register_module(mixer_name, JetBlock(ssm));
      break;
    default:
      throw std::invalid_argument(std::string("Block: unknown mixer kind '") + options.kind() +
                                  "' (expected A, S, G or J)");
  }
  auto norm = [&] { return RMSNorm(RMSNormOptions(D).eps(m.norm_eps)); };
  if (options.sandwich()) {
    mixer_out_norm = register_module(hf ? "input_layernorm_2" : "mixer_out_norm", norm());
  }
  if (!options.mlp()) return;
  mlp_norm = register_module(hf ? "post_attention_layernorm" : "mlp_norm", norm());
  const auto mlp = MlpOptions(D).ratio(m.mlp_ratio).hidden(m.mlp_hidden).ops(m.ops);
  if (m.mlp == MlpKind::kGelu) {
    gelu_mlp = register_module("mlp", GeluMlp(mlp));
  } else {
    swiglu_mlp = register_module("mlp", SwiGluMlp(mlp));
  }
  if (options.sandwich()) {
    mlp_out_norm = register_module(hf ? "post_attention_layernorm_2" : "mlp_out_norm", norm());
  }
}

MixerOutput BlockImpl::forward(const at::Tensor& x, const memory::LayerMemory& memory,
                               int64_t span) {
  const at::Tensor normed = mixer_norm(x);
  MixerOutput mixed = attention ? attention(normed, memory, span)
                      : gdn     ? gdn(normed, memory)
                                : jet(normed, memory);
  const at::Tensor h = x + (mixer_out_norm ? mixer_out_norm(mixed.y) : mixed.y);
  if (!mlp_norm) {
    mixed.y = h;
    return mixed;
  }
  const at::Tensor normed2 = mlp_norm(h);
  const at::Tensor z = gelu_mlp ? gelu_mlp(normed2) : swiglu_mlp(normed2);
  mixed.y = h + (mlp_out_norm ? mlp_out_norm(z) : z);
  return mixed;
}

}  // namespace hypnos::nn
