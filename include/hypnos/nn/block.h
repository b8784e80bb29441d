// Block: pre-norm residual mixer (attention, GatedDeltaNet or JetBlock) followed by a pre-norm MLP.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "hypnos/nn/attention.h"
#include "hypnos/nn/gated_delta_net.h"
#include "hypnos/nn/jet_block.h"
#include "hypnos/nn/mixer.h"
#include "hypnos/nn/mlp.h"
#include "hypnos/nn/model_options.h"
#include "hypnos/nn/rms_norm.h"

namespace hypnos::nn {

struct BlockOptions {
  BlockOptions(ModelOptions model, char kind) : model_(std::move(model)), kind_(kind) {}
  TORCH_ARG(ModelOptions, model);
  /// 'A' attention, 'S' sliding-window attention, 'G' GatedDeltaNet, 'J' JetBlock.
  TORCH_ARG(char, kind);
  /// An MLP after the mixer (an inserted Ouro JetBlock has none). Default: true.
  TORCH_ARG(bool, mlp) = true;
  /// Norms after the mixer and after the MLP too (Ouro's sandwich). Default: false.
  TORCH_ARG(bool, sandwich) = false;
};

/// x + mixer(mixer_norm(x)), then + mlp(mlp_norm(x)). Parameters: mixer_norm.weight, mixer.*,
/// mlp_norm.weight, mlp.* (with ParameterNames::kHf: input_layernorm.weight, self_attn.*,
/// post_attention_layernorm.weight, mlp.*). Sandwich: x + mixer_out_norm(mixer(mixer_norm(x))),
/// then + mlp_out_norm(mlp(mlp_norm(x))), the extra norms named mixer_out_norm / mlp_out_norm
/// (kHf: input_layernorm_2 / post_attention_layernorm_2). Without an MLP: x + mixer(mixer_norm(x)).
class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  explicit BlockImpl(BlockOptions options);
  void reset() override;

  /// x: [B, T, D]. `span` limits attention lookback (see AttentionImpl::forward); SSM mixers ignore
  /// it. Returns the block output [B, T, D] and the mixer's written memory.
  MixerOutput forward(const at::Tensor& x, const memory::LayerMemory& memory, int64_t span = 0);

  bool is_attention() const { return options.kind() == 'A' || options.kind() == 'S'; }

  BlockOptions options;
  RMSNorm mixer_norm{nullptr}, mlp_norm{nullptr};
  RMSNorm mixer_out_norm{nullptr}, mlp_out_norm{nullptr};  // sandwich only
  Attention attention{nullptr};                            // exactly one of the three mixers is set
  GatedDeltaNet gdn{nullptr};
  JetBlock jet{nullptr};
  GeluMlp gelu_mlp{nullptr};  // at most one of the two MLPs is set (none without mlp)
  SwiGluMlp swiglu_mlp{nullptr};
};
TORCH_MODULE(Block);

}  // namespace hypnos::nn
