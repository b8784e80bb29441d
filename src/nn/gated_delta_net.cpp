// GatedDeltaNet: the reference's GDN module with the short-conv cache and S carried in LayerMemory.
#include "hypnos/nn/gated_delta_net.h"

#include "nn/gdn_common.h"
#include "ops/gdn_fused.h"

namespace hypnos::nn {
namespace detail {

void init_decay_parameters(at::Tensor& A_log, at::Tensor& dt_bias) {
  torch::NoGradGuard no_grad;
  A_log.copy_(at::empty_like(A_log).uniform_(1.0, 16.0).log());
  const double lo = std::log(1e-3), hi = std::log(0.1);
  const at::Tensor dt = at::exp(at::rand_like(dt_bias) * (hi - lo) + lo);
  dt_bias.copy_(dt + at::log(-at::expm1(-dt)));  // softplus(dt_bias) = dt
}

std::pair<at::Tensor, at::Tensor> gated_delta_core(const DeltaRuleInputs& in,
                                                   const at::Tensor& A_log,
                                                   const at::Tensor& dt_bias,
                                                   const at::Tensor& initial_state, RMSNorm& o_norm,
                                                   const ops::OpsOptions& ops) {
  const int64_t B = in.v.size(0), T = in.v.size(1), K = in.q.size(3);
  // The op takes one dtype: the projections' (bf16 under autocast, the tensor-core path on a GPU).
  // v can be fp32 there (JetBlock's dynamic-conv sum), so it is cast to q's.
  const at::Tensor v = in.v.to(in.q.scalar_type());
  auto [g, beta] = ops::fused::gdn_gates(in.a, in.b, A_log, dt_bias, ops);  // [B, T, H]
  const std::optional<at::Tensor> s0 =
      initial_state.defined() ? std::optional<at::Tensor>(initial_state) : std::nullopt;
  auto [o, state] =
      ops::gated_delta_rule(in.q, in.k, v, g, beta, s0, std::pow(double(K), -0.5), ops);
  // o: [B, T, H, V] -> [B, T, H*V]
  o = ops::fused::gated_rms_norm(o, in.gate, o_norm->weight, o_norm->options.eps(), ops);
  return {o.view({B, T, -1}), state};
}

}  // namespace detail

GatedDeltaNetImpl::GatedDeltaNetImpl(GatedDeltaNetOptions options_) : options(options_) {
  reset();
}

void GatedDeltaNetImpl::reset() {
  const int64_t D = options.d_model(), H = options.n_heads();
  const int64_t HK = H * options.head_dim_k(), HV = H * options.head_dim_v();
  const int64_t W = options.conv_size();
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  auto conv = [W](int64_t c) {
    return torch::nn::Conv1d(torch::nn::Conv1dOptions(c, c, W).groups(c).bias(false));
  };
  q_proj = register_module("q_proj", linear(D, HK));
  k_proj = register_module("k_proj", linear(D, HK));
  v_proj = register_module("v_proj", linear(D, HV));
  g_proj = register_module("g_proj", linear(D, HV));
  a_proj = register_module("a_proj", linear(D, H));
  b_proj = register_module("b_proj", linear(D, H));
  q_conv = register_module("q_conv", conv(HK));
  k_conv = register_module("k_conv", conv(HK));
  v_conv = register_module("v_conv", conv(HV));
  A_log = register_parameter("A_log", torch::empty({H}));
  dt_bias = register_parameter("dt_bias", torch::empty({H}));
  detail::init_decay_parameters(A_log, dt_bias);
  o_norm = register_module("o_norm",
                           RMSNorm(RMSNormOptions(options.head_dim_v()).eps(options.norm_eps())));
  o_proj = register_module("o_proj", linear(HV, D));
}

MixerOutput GatedDeltaNetImpl::forward(const at::Tensor& x, const memory::LayerMemory& memory) {
  const int64_t B = x.size(0), T = x.size(1), H = options.n_heads();
  const int64_t K = options.head_dim_k(), V = options.head_dim_v();
  // One matmul for the six input projections and one depthwise convolution for q, k, v: the
  // concatenated weights give each output column the same dot product as its own layer, in a sixth
  // of the launches (a sleep step runs this layer once per window and pass). The parameters stay
  // separate modules with their Hugging Face names; the conv cache is [q | k | v] as before.
  const at::Tensor projected =
      at::linear(x, at::cat({q_proj->weight, k_proj->weight, v_proj->weight, g_proj->weight,
                             a_proj->weight, b_proj->weight}));
  const auto parts = projected.split_with_sizes({2 * H * K + H * V, H * V, H, H}, -1);
  const at::Tensor conv_weight = at::cat({q_conv->weight, k_conv->weight, v_conv->weight});
  // SiLU(conv) of q, k and v in one op; q and k then L2-normalised per head. One split (not three
  // slices): its backward is one concatenation, where slices would each build a zero-filled
  // gradient of the whole tensor.
  const ops::OpsOptions& ops = options.ops();
  auto [qkv, new_conv] = ops::fused::causal_conv_silu(parts[0], conv_weight, memory.conv, ops);
  const auto qkv_parts = qkv.split_with_sizes({H * K, H * K, H * V}, -1);
  detail::DeltaRuleInputs in;
  in.q = ops::fused::l2_normalize_heads(qkv_parts[0], H, /*silu=*/false, ops);
  in.k = ops::fused::l2_normalize_heads(qkv_parts[1], H, /*silu=*/false, ops);
  in.v = qkv_parts[2].view({B, T, H, V});
  in.gate = parts[1];
  in.a = parts[2];
  in.b = parts[3];
  auto [o, state] = detail::gated_delta_core(in, A_log, dt_bias, memory.state, o_norm, ops);
  MixerOutput out;
  out.y = o_proj(o);
  out.written.state = state;
  out.written.conv = new_conv;
  return out;
}

}  // namespace hypnos::nn
