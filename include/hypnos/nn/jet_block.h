// JetBlock (Jet-Nemotron's token mixer, docs/paper.md): a Gated DeltaNet whose q, k skip the short
// conv (SiLU only) and whose v passes a *dynamic* short conv with per-token kernels generated from
// x.
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

/// Jet-Nemotron's parameter layout of the kernel generator: w1 (Linear, no bias), then w2 (Linear
/// with bias). Only the names: JetBlock runs the two layers itself.
struct KernelGeneratorOptions {
  KernelGeneratorOptions(int64_t in, int64_t hidden, int64_t out)
      : in_(in), hidden_(hidden), out_(out) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(int64_t, hidden);
  TORCH_ARG(int64_t, out);
};

/// Parameters: w1.weight [hidden, in], w2.weight [out, hidden], w2.bias [out].
class KernelGeneratorImpl : public torch::nn::Cloneable<KernelGeneratorImpl> {
 public:
  explicit KernelGeneratorImpl(KernelGeneratorOptions options);
  void reset() override;
  KernelGeneratorOptions options;
  torch::nn::Linear w1{nullptr}, w2{nullptr};
};
TORCH_MODULE(KernelGenerator);

/// Parameters: kernel_generator.* (the dynamic_conv1d module of Jet-Nemotron's JetBlock).
class DynamicConv1dImpl : public torch::nn::Cloneable<DynamicConv1dImpl> {
 public:
  explicit DynamicConv1dImpl(KernelGeneratorOptions options);
  void reset() override;
  KernelGeneratorOptions options;
  KernelGenerator kernel_generator{nullptr};
};
TORCH_MODULE(DynamicConv1d);

/// Parameters: q_proj, k_proj, v_proj, g_proj, a_proj, b_proj, A_log, dt_bias, o_norm, o_proj as in
/// GatedDeltaNet; kernel_down [H*V/r, D] (no bias) and kernel_up [H*V*W, H*V/r] + bias [H*V*W]
/// (r = generator_reduction, 8 by default) generate the per-token, per-channel kernel of the
/// dynamic conv on v: tap j of channel c is row c*W + j, tap W-1 weighting the current token.
/// With hf_names they are registered as dynamic_conv1d.kernel_generator.w1 and .w2 (Jet-Nemotron's
/// checkpoint keys); kernel_down and kernel_up point at them either way. kernel_up's weight starts
/// at zero and its bias like a static depthwise conv (U(-1/sqrt(W), 1/sqrt(W))), so at init the
/// layer is a static-conv GDN without q/k convs; kernel_down has the ordinary Linear init, so the
/// generator learns from the first step.
class JetBlockImpl : public torch::nn::Cloneable<JetBlockImpl> {
 public:
  explicit JetBlockImpl(JetBlockOptions options);
  void reset() override;
  /// A clone's kernel_down / kernel_up point at its own generator (a nested module is replaced
  /// after reset() when cloned).
  std::shared_ptr<torch::nn::Module> clone(
      const std::optional<at::Device>& device = std::nullopt) const override;

  /// x: [B, T, D]; memory.state: S [B, H, K, V] or undefined; memory.conv: the v inputs of the
  /// previous conv_size-1 tokens [B, conv_size-1, H*V] or undefined. Same outputs as GatedDeltaNet.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory);

  JetBlockOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr};
  torch::nn::Linear a_proj{nullptr}, b_proj{nullptr}, o_proj{nullptr};
  torch::nn::Linear kernel_down{nullptr}, kernel_up{nullptr};
  at::Tensor A_log, dt_bias;
  RMSNorm o_norm{nullptr};
  DynamicConv1d dynamic_conv1d{nullptr};  // set with hf_names only

 private:
  void bind_generator();
};
TORCH_MODULE(JetBlock);

}  // namespace hypnos::nn
