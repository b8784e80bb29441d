// Gated DeltaNet layer (fla / Jet-Nemotron form, docs/paper.md): q, k, v projections, causal
// depthwise short conv + SiLU, L2-normalised q and k, beta and log-decay g gates, the gated delta
// rule, a per-head RMSNorm gated by SiLU(W_g x), and an output projection. S and the conv cache
// come in and go out.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "hypnos/nn/mixer.h"
#include "hypnos/nn/rms_norm.h"
#include "hypnos/ops/ops_options.h"

namespace hypnos::nn {

struct GatedDeltaNetOptions {
  GatedDeltaNetOptions(int64_t d_model, int64_t n_heads, int64_t head_dim_k, int64_t head_dim_v)
      : d_model_(d_model), n_heads_(n_heads), head_dim_k_(head_dim_k), head_dim_v_(head_dim_v) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, n_heads);
  TORCH_ARG(int64_t, head_dim_k);
  TORCH_ARG(int64_t, head_dim_v);
  /// Short convolution kernel size. Default: 4.
  TORCH_ARG(int64_t, conv_size) = 4;
  /// Epsilon of the per-head output RMSNorm. Default: 1e-6.
  TORCH_ARG(double, norm_eps) = 1e-6;
  /// The ops' implementation choices (the delta rule's backend and kernels, fused small ops).
  /// Default: OpsOptions{} (auto backend, fused kernels on CUDA).
  TORCH_ARG(ops::OpsOptions, ops);

 public:
  /// Shorthand for setting ops().gdn_backend alone.
  GatedDeltaNetOptions& backend(ops::GdnBackend backend) {
    ops_.gdn_backend = backend;
    return *this;
  }
  /// JetBlock only: the kernel generator's hidden width is H*V / generator_reduction. Default: 8.
  TORCH_ARG(int64_t, generator_reduction) = 8;
  /// JetBlock only: register the generator under Jet-Nemotron's names
  /// (dynamic_conv1d.kernel_generator.w1/w2) instead of kernel_down/kernel_up. Default: false.
  TORCH_ARG(bool, hf_names) = false;
};

/// Parameters (no biases): q_proj, k_proj [H*K, D]; v_proj, g_proj [H*V, D]; a_proj, b_proj [H, D];
/// q_conv, k_conv [H*K, 1, conv_size], v_conv [H*V, 1, conv_size]; A_log [H] (A ~ U(1, 16));
/// dt_bias [H] (softplus^-1 of dt, dt log-uniform in [1e-3, 0.1]); o_norm.weight [V]; o_proj [D,
/// H*V].
class GatedDeltaNetImpl : public torch::nn::Cloneable<GatedDeltaNetImpl> {
 public:
  explicit GatedDeltaNetImpl(GatedDeltaNetOptions options);
  void reset() override;

  /// x: [B, T, D]; memory.state: S [B, H, K, V] or undefined (zeros); memory.conv: the conv inputs
  /// of the previous conv_size-1 tokens [B, conv_size-1, H*K + H*K + H*V] or undefined (zeros).
  /// Returns y: [B, T, D] and written.state = S_T, written.conv = this window's last inputs.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory);

  GatedDeltaNetOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr};
  torch::nn::Linear a_proj{nullptr}, b_proj{nullptr}, o_proj{nullptr};
  torch::nn::Conv1d q_conv{nullptr}, k_conv{nullptr}, v_conv{nullptr};
  at::Tensor A_log, dt_bias;
  RMSNorm o_norm{nullptr};
};
TORCH_MODULE(GatedDeltaNet);

}  // namespace hypnos::nn
