// JetBlock: GDN gates and output as in gated_delta_net.cpp, with the dynamic convolution on v.
#include "hypnos/nn/jet_block.h"

#include "nn/gdn_common.h"
#include "ops/gdn_fused.h"

namespace hypnos::nn {

KernelGeneratorImpl::KernelGeneratorImpl(KernelGeneratorOptions options_) : options(options_) {
  reset();
}

void KernelGeneratorImpl::reset() {
  w1 = register_module(
      "w1",
      torch::nn::Linear(torch::nn::LinearOptions(options.in(), options.hidden()).bias(false)));
  w2 = register_module("w2", torch::nn::Linear(options.hidden(), options.out()));
}

DynamicConv1dImpl::DynamicConv1dImpl(KernelGeneratorOptions options_) : options(options_) {
  reset();
}

void DynamicConv1dImpl::reset() {
  kernel_generator = register_module("kernel_generator", KernelGenerator(options));
}

JetBlockImpl::JetBlockImpl(JetBlockOptions options_) : options(options_) {
  TORCH_CHECK(options.generator_reduction() >= 1, "JetBlock: generator_reduction (",
              options.generator_reduction(), ") must be at least 1");
  TORCH_CHECK(options.n_heads() * options.head_dim_v() >= options.generator_reduction(),
              "JetBlock: H*V (", options.n_heads() * options.head_dim_v(),
              ") must be at least generator_reduction (", options.generator_reduction(), ")");
  reset();
}

std::shared_ptr<torch::nn::Module> JetBlockImpl::clone(
    const std::optional<at::Device>& device) const {
  auto copy = Cloneable<JetBlockImpl>::clone(device);
  std::dynamic_pointer_cast<JetBlockImpl>(copy)->bind_generator();
  return copy;
}

void JetBlockImpl::bind_generator() {
  if (!dynamic_conv1d) return;
  kernel_down = dynamic_conv1d->kernel_generator->w1;
  kernel_up = dynamic_conv1d->kernel_generator->w2;
}

void JetBlockImpl::reset() {
  const int64_t D = options.d_model(), H = options.n_heads();
  const int64_t HK = H * options.head_dim_k(), HV = H * options.head_dim_v();
  const int64_t W = options.conv_size();
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  q_proj = register_module("q_proj", linear(D, HK));
  k_proj = register_module("k_proj", linear(D, HK));
  v_proj = register_module("v_proj", linear(D, HV));
  g_proj = register_module("g_proj", linear(D, HV));
  a_proj = register_module("a_proj", linear(D, H));
  b_proj = register_module("b_proj", linear(D, H));
  const int64_t hidden = HV / options.generator_reduction();
  if (options.hf_names()) {
    dynamic_conv1d =
        register_module("dynamic_conv1d", DynamicConv1d(KernelGeneratorOptions(D, hidden, HV * W)));
    bind_generator();
  } else {
    kernel_down = register_module("kernel_down", linear(D, hidden));
    kernel_up =
        register_module("kernel_up", torch::nn::Linear(torch::nn::LinearOptions(hidden, HV * W)));
  }
  {
    // The layer starts as the static convolution its bias gives (kernel_up's weight is zero), and
    // can still learn: kernel_down keeps its ordinary initialisation, so kernel_up's gradient
    // dK silu(kernel_down x)^T is non-zero from the first step. Zeroing both would stall the
    // generator for good (silu(0) = 0 zeroes kernel_up's gradient, kernel_up = 0 kernel_down's).
    torch::NoGradGuard no_grad;
    kernel_up->weight.zero_();
    const double bound = 1.0 / std::sqrt(static_cast<double>(W));
    kernel_up->bias.uniform_(-bound, bound);
  }
  A_log = register_parameter("A_log", torch::empty({H}));
  dt_bias = register_parameter("dt_bias", torch::empty({H}));
  detail::init_decay_parameters(A_log, dt_bias);
  o_norm = register_module("o_norm",
                           RMSNorm(RMSNormOptions(options.head_dim_v()).eps(options.norm_eps())));
  o_proj = register_module("o_proj", linear(HV, D));
}

MixerOutput JetBlockImpl::forward(const at::Tensor& x, const memory::LayerMemory& memory) {
  const int64_t B = x.size(0), T = x.size(1), H = options.n_heads();
  const int64_t K = options.head_dim_k(), V = options.head_dim_v(), W = options.conv_size();
  // One matmul for the seven bias-free input projections (see GatedDeltaNet::forward): q, k, v,
  // the output gate, a, b and the dynamic-convolution kernel's down projection.
  const at::Tensor projected =
      at::linear(x, at::cat({q_proj->weight, k_proj->weight, v_proj->weight, g_proj->weight,
                             a_proj->weight, b_proj->weight, kernel_down->weight}));
  const auto parts = projected.split_with_sizes(
      {H * K, H * K, H * V, H * V, H, H, kernel_down->weight.size(0)}, -1);
  // Dynamic conv: kernel[b, t, c, j] weights v_in[t - (W-1) + j, c]; kernel: [B, T, H*V, W]
  const at::Tensor kernel = kernel_up(at::silu(parts[6])).view({B, T, H * V, W});
  const ops::OpsOptions& ops = options.ops();
  auto [v, new_conv] = ops::fused::dynamic_conv_silu(parts[2], kernel, memory.conv, ops);
  detail::DeltaRuleInputs in;
  in.q = ops::fused::l2_normalize_heads(parts[0], H, /*silu=*/true, ops);
  in.k = ops::fused::l2_normalize_heads(parts[1], H, /*silu=*/true, ops);
  in.v = v.view({B, T, H, V});
  in.gate = parts[3];
  in.a = parts[4];
  in.b = parts[5];
  auto [o, state] = detail::gated_delta_core(in, A_log, dt_bias, memory.state, o_norm, ops);
  MixerOutput out;
  out.y = o_proj(o);
  out.written.state = state;
  out.written.conv = new_conv;
  return out;
}

}  // namespace hypnos::nn
