// JetBlock (Jet-Nemotron's token mixer, PAPER.md): a Gated DeltaNet whose q, k skip the short conv
// (SiLU only) and whose v passes a *dynamic* short conv with per-token kernels generated from x.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "hypnos/nn/gated_delta_net.h"
#include "hypnos/nn/mixer.h"
#include "hypnos/nn/rms_norm.h"

namespace hypnos::nn {

/// Same options as GatedDeltaNet; conv_size is the dynamic kernel's length.
using JetBlockOptions = GatedDeltaNetOptions;

/// Parameters: q_proj, k_proj, v_proj, g_proj, a_proj, b_proj, A_log, dt_bias, o_norm, o_proj as in
/// GatedDeltaNet; kernel_down [H*V/8, D] (no bias) and kernel_up [H*V*W, H*V/8] + bias [H*V*W]
/// generate the per-token, per-channel kernel of the dynamic conv on v. kernel_up's weight starts
/// at zero and its bias like a static depthwise conv (U(-1/sqrt(W), 1/sqrt(W))), so at init the
/// layer is a static-conv GDN without q/k convs; kernel_down has the ordinary Linear init, so the
/// generator learns from the first step.
class JetBlockImpl : public torch::nn::Cloneable<JetBlockImpl> {
 public:
  explicit JetBlockImpl(JetBlockOptions options);
  void reset() override;

  /// x: [B, T, D]; memory.state: S [B, H, K, V] or undefined; memory.conv: the v inputs of the
  /// previous conv_size-1 tokens [B, conv_size-1, H*V] or undefined. Same outputs as GatedDeltaNet.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory);

  JetBlockOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr};
  torch::nn::Linear a_proj{nullptr}, b_proj{nullptr}, o_proj{nullptr};
  torch::nn::Linear kernel_down{nullptr}, kernel_up{nullptr};
  at::Tensor A_log, dt_bias;
  RMSNorm o_norm{nullptr};
};
TORCH_MODULE(JetBlock);

}  // namespace hypnos::nn
